"""Pure domain: the countries, the dump's schema, the model's features, the promotion rules,
drift statistics and the model families. No connection, MLflow, Ray or Dagster here."""
