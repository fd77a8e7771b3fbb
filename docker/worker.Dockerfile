# CPU image: ctcd with its locked dependencies. Runs the cpu-pool worker, the one-shot `deploy` job and the
# BentoML server in docker/compose.yaml. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t ctcd-worker-cpu .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CTCD_HOME=/data/ctcd \
    CTCD_CONFIG=/opt/ctcd/docker/ctcd.yaml \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    OMP_NUM_THREADS=1

WORKDIR /opt/ctcd
# Dependencies first (a layer that changes only with the lock), then the code.
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv pip install --system --no-cache -r requirements.lock
# Only ctcd is packaged (-e below); flows/ and tasks/ stay here, the project root the workers run from.
COPY ctcd ./ctcd
COPY tasks ./tasks
COPY flows ./flows
COPY configs ./configs
COPY deployments ./deployments
COPY docker/ctcd.yaml ./docker/ctcd.yaml
RUN uv pip install --system --no-cache --no-deps -e . && mkdir -p /data/ctcd

CMD ["prefect", "worker", "start", "--pool", "cpu-pool", "--type", "process"]
