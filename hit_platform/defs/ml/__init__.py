"""The `ml` assets: features and splits, candidate models, evaluation and the champion, batch
predictions (key prefix `ml`, group `ml`)."""
