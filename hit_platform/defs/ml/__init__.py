"""The `ml` assets: features and splits, candidate models, evaluation and the champion, batch
predictions and their explanations (key prefix `ml`, group `ml`)."""
