"""How long `ctcd up` takes to a healthy stack, against starting its two servers by hand (the peer).

Runs on a fresh temporary workspace with free ports:
  1. peer: `prefect server start` and `mlflow server` started side by side, until both answer health;
  2. `ctcd up` (Prefect server, both pools with a worker each, MLflow, `prefect deploy` of the real
     deployments/prefect.yaml), then a second `ctcd up` (everything reused), then `ctcd down`.
Prints each time and the ratios. Usage: .venv/bin/python benchmarks/stack_startup.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ctcd.net import free_port, http_ok  # noqa: E402

BIN = Path(sys.executable).parent


def peer(root: Path) -> float:
    """Start the Prefect and MLflow servers by hand; seconds until both are healthy."""
    pp, mp = free_port(), free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    (root / "mlflow").mkdir(parents=True)
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(pp)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                BIN / "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow/mlflow.db",
                "--default-artifact-root", f"{root}/mlflow/artifacts", "--host", "127.0.0.1",
                "--port", str(mp), "--workers", "1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]  # fmt: skip
    try:
        while not (
            http_ok(f"http://127.0.0.1:{pp}/api/health", "true")
            and http_ok(f"http://127.0.0.1:{mp}/health", "OK")
        ):
            time.sleep(0.3)
        return time.monotonic() - start
    finally:
        for p in procs:
            os.killpg(p.pid, 15)
        for p in procs:
            p.wait(timeout=60)


def ctcd(root: Path, config: Path, *args: str) -> float:
    """Run one ctcd command; seconds it took (fails loudly on a non-zero exit)."""
    start = time.monotonic()
    done = subprocess.run(
        [BIN / "ctcd", *args, "--config", str(config)],
        env={**os.environ, "CTCD_HOME": str(root / "home")},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ctcd {' '.join(args)} failed: {done.stderr}{done.stdout}")
    return time.monotonic() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
        raw["gates"]["data"]["suite"] = str(REPO / "configs" / raw["gates"]["data"]["suite"])
        raw["orchestration"].update(
            prefect_port=free_port(), mlflow_port=free_port(), startup_timeout_seconds=600
        )
        raw["serving"]["port"] = free_port()
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(raw))

        load = os.getloadavg()[0]
        t_peer = peer(root / "peer")
        try:
            t_up = ctcd(root, config, "up")
            t_again = ctcd(root, config, "up")
        finally:
            t_down = ctcd(root, config, "down")
        print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
        print(f"peer: both servers by hand, until healthy   : {t_peer:6.1f} s")
        print(f"ctcd up (fresh workspace, 2 workers, deploy): {t_up:6.1f} s  ({t_up / t_peer:.2f}x peer)")
        print(
            f"ctcd up again (all reused, redeploy)        : {t_again:6.1f} s  ({t_again / t_up:.2f}x first)"
        )
        print(f"ctcd down                                   : {t_down:6.1f} s")


if __name__ == "__main__":
    main()
