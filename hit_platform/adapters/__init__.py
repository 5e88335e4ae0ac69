"""Adapters to the outside: the lake (DuckLake), MLflow tracking, alerts, reports."""
