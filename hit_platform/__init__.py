"""hit_platform: per-country Spotify hit probabilities as a Dagster asset graph."""
