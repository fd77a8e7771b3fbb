# GPU image: the same ctcd install on a CUDA runtime, for the gpu-pool worker (and for the docker and
# kubernetes GPU work-pool templates in deployments/work-pools/). XGBoost's PyPI wheel is CUDA-enabled; the
# NVIDIA Container Toolkit on the host provides the driver. Build from the repository root:
#   docker build -f docker/worker-gpu.Dockerfile -t ctcd-worker-gpu .
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CTCD_HOME=/data/ctcd \
    CTCD_CONFIG=/opt/ctcd/docker/ctcd.yaml \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
# Ubuntu 24.04 ships Python 3.12; ctcd pins 3.11, which uv installs.
RUN python3 -m pip install --no-cache-dir --break-system-packages "uv==0.13.9" \
    && uv python install 3.11 \
    && uv venv --python 3.11 /opt/venv

WORKDIR /opt/ctcd
COPY requirements.lock pyproject.toml README.md ./
RUN uv pip install --no-cache -r requirements.lock
# Only ctcd is packaged (-e below); flows/ and tasks/ stay here, the project root the workers run from.
COPY ctcd ./ctcd
COPY tasks ./tasks
COPY flows ./flows
COPY configs ./configs
COPY deployments ./deployments
COPY docker/ctcd.yaml ./docker/ctcd.yaml
RUN uv pip install --no-cache --no-deps -e . && mkdir -p /data/ctcd

CMD ["prefect", "worker", "start", "--pool", "gpu-pool", "--type", "process"]
