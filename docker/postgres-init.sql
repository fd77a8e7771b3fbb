-- The compose PostgreSQL holds two databases: `prefect` (POSTGRES_DB) and this one for MLflow.
CREATE DATABASE mlflow;
