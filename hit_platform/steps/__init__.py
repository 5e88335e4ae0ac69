"""Steps: SQL over a DuckDB connection they are given (ingest, transforms, datasets, gates,
monitors), testable without Dagster."""
