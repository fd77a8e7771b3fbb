# MLflow tracking server with the PostgreSQL driver and the S3 client for MinIO-backed, proxied artifacts.
#   docker build -f docker/mlflow.Dockerfile -t ctcd-mlflow .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg2-binary>=2.9,<3" "boto3>=1.34,<2"

EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
