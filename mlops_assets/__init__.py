"""Fraud-detection MLOps platform: a Dagster code location over DuckDB, MLflow and Kafka."""
