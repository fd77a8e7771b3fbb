"""Serving benchmark: single-row requests at 16 concurrent connections, in one run, against

  (a) ctcd's BentoML service (`ctcd.serving.service`, adaptive batching, config `serving:` settings),
  (b) `mlflow models serve --env-manager local` on the same registered model version (the peer),
  (c) a plain batched BentoML service on the same model (`benchmarks/plain_bento_service.py`: no data
      contract, no API key, no prediction log): the framework's own floor,
  (d) raw in-process `predict_proba` on a one-row DataFrame (the limit: no HTTP at all).

The model is an XGBoost classifier with the default config's parameters, trained on synthetic rows that
satisfy the data contract, registered in a throw-away workspace. Load comes from `wrk` when installed
(`apt-get install -y wrk`), else from a small asyncio/httpx generator (which itself costs CPU: numbers are
then lower). Run: `.venv/bin/python benchmarks/bench_serving.py [--seconds 15] [--connections 16]`.
`--rollout shadow|canary` also measures ctcd with a second model version served beside the champion in
that mode (alternating with the champion alone on the same server: the shadow latency cost), each at
saturation and paced (`--pause-ms` between a connection's requests: a load the server keeps up with).
`--profile` also samples ctcd's server tree with py-spy (`pip install py-spy`; not in the lock) during a
separate load run after the measured one, and prints the functions with the most samples (own and total).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spy_profile import profile_server  # noqa: E402  (benchmarks/, the script's folder)

from ctcd import mlflow_connection, registry  # noqa: E402
from ctcd.config import CtcdConfig, load_config  # noqa: E402
from ctcd.net import free_port, wait_http  # noqa: E402
from ctcd.serving.schema import contract_rules  # noqa: E402
from ctcd.workspace import Workspace  # noqa: E402


def synthetic_rows(cfg: CtcdConfig, n: int, seed: int = 0) -> pd.DataFrame:
    """Rows inside the data contract (or generic ranges without one), as float64."""
    rng = np.random.default_rng(seed)
    rules = contract_rules(cfg.gates.data.suite)
    data = {}
    for name in cfg.dataset.features:
        rule = rules.get(name)
        if rule is not None and rule.allowed:
            data[name] = rng.choice(np.asarray(rule.allowed, dtype="float64"), n)
        else:
            low = rule.min_value if rule and rule.min_value is not None else 0.0
            high = rule.max_value if rule and rule.max_value is not None else low + 100.0
            data[name] = rng.uniform(low, high, n)
    return pd.DataFrame(data)[cfg.dataset.features]


def register_champion(
    cfg: CtcdConfig, ws: Workspace, seed: int = 0, champion: bool = True
) -> registry.ModelRef:
    """Train and register an XGBoost model like the real champion, and make it the champion (unless not)."""
    import mlflow
    from mlflow.models import infer_signature
    from xgboost import XGBClassifier

    registry.Registry.open(cfg, ws)
    x = synthetic_rows(cfg, 5000, seed=seed)
    first = cfg.dataset.numerical_features[0]
    y = (x[first] > x[first].median()).astype(int)
    params = {
        k: v for k, v in cfg.model.params.items() if k in ("n_estimators", "max_depth", "learning_rate")
    }
    model = XGBClassifier(**params, n_jobs=1).fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=cfg.registered_model_name,
            signature=infer_signature(x, y),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=["scikit-learn", "xgboost"],
        )
    ref = registry.Registry(cfg, ws).version(info.registered_model_version)
    if champion:
        registry.Registry(cfg, ws).move_alias(registry.CHAMPION, ref, reason="benchmark")
    return ref


def one_row(cfg: CtcdConfig) -> dict:
    """One request row as JSON values (categories as ints)."""
    row = synthetic_rows(cfg, 1, seed=1).iloc[0].to_dict()
    return {k: int(v) if k in cfg.dataset.categorical_features else float(v) for k, v in row.items()}


def run_wrk(
    url: str, body: dict, seconds: int, connections: int, headers: dict[str, str], pause_ms: float = 0.0
) -> dict:
    """Drive `url` with wrk (POST JSON); return req/s, p50 and p99 in ms. `pause_ms`: each connection waits
    that long between its requests (wrk's `delay()`), so the load stays below saturation."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(json.dumps(body))}",
        'wrk.headers["Content-Type"] = "application/json"',
        *[f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()],
        *([f"function delay() return {pause_ms:g} end"] if pause_ms else []),
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_httpx(
    url: str, body: dict, seconds: int, connections: int, headers: dict[str, str], pause_ms: float = 0.0
) -> dict:
    """The same measurement with an asyncio/httpx generator, for machines without wrk."""

    async def main() -> dict:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    response = await client.post(url, json=body)
                    latencies.append(time.perf_counter() - start)
                    errors += response.status_code != 200
                    if pause_ms:
                        await asyncio.sleep(pause_ms / 1e3)

            begin = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - begin
        ms = np.asarray(latencies) * 1e3
        return {
            "rps": len(ms) / elapsed,
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "errors": errors,
            "socket_errors": "",
        }

    return asyncio.run(main())


def measure(
    url: str, body: dict, seconds: int, connections: int, headers: dict[str, str], pause_ms: float = 0.0
) -> dict:
    """Warm up for a few seconds, then measure."""
    drive = run_wrk if shutil.which("wrk") else run_httpx
    drive(url, body, 3, connections, headers, pause_ms)
    return drive(url, body, seconds, connections, headers, pause_ms)


def measure_in_process(model: object, frame: pd.DataFrame, seconds: float) -> dict:
    """Back-to-back predict_proba calls on a one-row DataFrame in this process (one thread)."""
    for _ in range(50):
        model.predict_proba(frame)
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        model.predict_proba(frame)
        latencies.append(time.perf_counter() - start)
    ms = np.asarray(latencies) * 1e3
    return {"rps": 1e3 / ms.mean(), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def start_mlflow(cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, port: int) -> subprocess.Popen:
    """`mlflow models serve --env-manager local -w 1` on the same registered version."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_connection.tracking_uri(cfg, ws),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its uvicorn
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    cmd = [
        *[str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", ref.uri],
        *["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
    ]
    log = (ws.logs / "mlflow-serve.log").open("wb")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_plain_bento(cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, port: int) -> subprocess.Popen:
    """`bentoml serve` of `plain_bento_service.py` on the same registered version, one worker."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_connection.tracking_uri(cfg, ws),
        "BENCH_MODEL_URI": ref.uri,
        "BENCH_FEATURES": ",".join(cfg.dataset.features),
        "BENCH_MAX_BATCH": str(cfg.serving.max_batch_size),
        "BENTOML_HOME": str(ws.root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    cmd = [sys.executable, "-m", "bentoml", "serve", "plain_bento_service:PlainService"]
    cmd += ["--working-dir", str(REPO / "benchmarks"), "--host", "127.0.0.1", "--port", str(port)]
    log = (ws.logs / "plain-bento.log").open("wb")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def measure_rollout(cfg: CtcdConfig, ws: Workspace, url: str, body: dict, args: argparse.Namespace) -> dict:
    """The champion alone, then with a candidate in `args.rollout` beside it, alternating `args.rounds` times
    on the same live server (so both see the same machine load), each at saturation (every connection sends
    its next request when the last is answered: p50 there is mostly queueing, the throughput cost) and
    paced (each connection pauses `args.pause_ms` between requests: a load the server keeps up with, where
    p50 is what a request costs)."""
    from ctcd.serving import deploy

    candidate = register_champion(cfg, ws, seed=1, champion=False)
    out: dict[str, dict] = {}
    for i in range(1, args.rounds + 1):
        for mode in ("champion alone", args.rollout):
            if mode != "champion alone":
                deploy.start_rollout(cfg, ws, url, candidate.version, args.rollout)
            for load, pause in (("saturated", 0.0), ("paced", args.pause_ms)):
                name = f"rollout: {mode} {load} #{i}"
                out[name] = measure(f"{url}/predict", body, args.seconds, args.connections, {}, pause)
                print(f"{name}:", out[name], flush=True)
        deploy.end_rollout(cfg, ws, url, promoted=False)
    return out


def main() -> None:
    """Run the three measurements and print req/s, p50, p99 and the ratios."""
    import signal

    from ctcd.serving.server import start_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="BentoML workers (default: the config's)")
    parser.add_argument("--profile", action="store_true", help="sample ctcd's server with py-spy under load")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain BentoML service")
    parser.add_argument("--no-mlflow", action="store_true", help="skip `mlflow models serve`")
    parser.add_argument(
        "--rollout",
        choices=["shadow", "canary"],
        default=None,
        help="also measure ctcd with a second model version served in this rollout mode (same server, "
        "alternating with the plain champion, `--rounds` times each)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the --rollout comparison")
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=10.0,
        help="the --rollout comparison's paced load: each connection's pause between requests (ms)",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ctcd-bench-"))
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    raw["gates"]["data"]["suite"] = str(load_config(REPO / "configs" / "default.yaml").gates.data.suite)
    raw["serving"] = {**raw["serving"], "port": free_port()}
    if args.workers:
        raw["serving"]["workers"] = args.workers
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    os.environ["CTCD_HOME"] = str(root / "home")
    os.environ.pop(raw["serving"]["api_key_env"], None)  # measure without the API key check's cost
    cfg = load_config(config)
    ws = Workspace.open(root / "home")
    ref = register_champion(cfg, ws)
    row = one_row(cfg)
    tool = "wrk" if shutil.which("wrk") else "asyncio/httpx"
    print(f"model: XGBoost {cfg.model.params}, version {ref.version}; load: {tool}, {args.connections} conns")

    results: dict[str, dict] = {}
    model = registry.Registry(cfg, ws).load_model(ref)
    results["in-process predict_proba"] = measure_in_process(
        model, pd.DataFrame([row], columns=cfg.dataset.features, dtype="float64"), 5.0
    )
    print("in-process:", results["in-process predict_proba"], flush=True)

    handle = start_server(cfg, ws, cfg.serving.port, timeout=300)
    try:
        results[f"ctcd BentoML ({cfg.serving.workers} worker)"] = measure(
            f"{handle.url}/predict", {"rows": [row]}, args.seconds, args.connections, {}
        )
        print("ctcd:", results[f"ctcd BentoML ({cfg.serving.workers} worker)"], flush=True)
        if args.rollout:
            results |= measure_rollout(cfg, ws, handle.url, {"rows": [row]}, args)
        if args.profile:
            drive = run_wrk if shutil.which("wrk") else run_httpx
            url = f"{handle.url}/predict"
            print(
                profile_server(
                    handle.pid,
                    lambda: drive(url, {"rows": [row]}, args.seconds, args.connections, {}),
                    args.seconds,
                )
            )
    finally:
        handle.stop()

    if not args.no_plain:
        plain_port = free_port()
        plain = start_plain_bento(cfg, ws, ref, plain_port)
        try:
            wait_http(f"http://127.0.0.1:{plain_port}/readyz", timeout=300)
            results["plain BentoML batchable (1 worker)"] = measure(
                f"http://127.0.0.1:{plain_port}/predict", {"rows": [row]}, args.seconds, args.connections, {}
            )
            print("plain BentoML:", results["plain BentoML batchable (1 worker)"], flush=True)
        finally:
            os.killpg(plain.pid, signal.SIGTERM)
            plain.wait(timeout=30)

    if not args.no_mlflow:
        mlflow_port = free_port()
        peer = start_mlflow(cfg, ws, ref, mlflow_port)
        try:
            wait_http(f"http://127.0.0.1:{mlflow_port}/ping", timeout=300)
            results["mlflow models serve (-w 1)"] = measure(
                f"http://127.0.0.1:{mlflow_port}/invocations",
                {"dataframe_records": [row]},
                args.seconds,
                args.connections,
                {},
            )
        finally:
            os.killpg(peer.pid, signal.SIGTERM)
            peer.wait(timeout=30)

    print(f"\n{'server':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in results.items():
        print(f"{name:34} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r.get('errors', 0):7}")
    ours = next(r for n, r in results.items() if n.startswith("ctcd"))
    limit = results["in-process predict_proba"]
    if "mlflow models serve (-w 1)" in results:
        peer_r = results["mlflow models serve (-w 1)"]
        speedup, faster = ours["rps"] / peer_r["rps"], peer_r["p50"] / ours["p50"]
        print(f"\nctcd / mlflow: {speedup:.1f}x req/s, p50 {faster:.1f}x lower")
    if args.rollout:
        for load in ("paced", "saturated"):
            alone = [r for n, r in results.items() if n.startswith(f"rollout: champion alone {load}")]
            both = [r for n, r in results.items() if n.startswith(f"rollout: {args.rollout} {load}")]
            p50_alone, p50_both = np.median([r["p50"] for r in alone]), np.median([r["p50"] for r in both])
            rps_alone, rps_both = np.median([r["rps"] for r in alone]), np.median([r["rps"] for r in both])
            print(
                f"{args.rollout}, {load}: p50 {p50_both:.2f} ms vs {p50_alone:.2f} ms alone "
                f"({p50_both / p50_alone - 1:+.0%}), req/s {rps_both:.0f} vs {rps_alone:.0f} "
                f"({rps_both / rps_alone - 1:+.0%}; medians of {len(both)} alternating runs)"
            )
    if "plain BentoML batchable (1 worker)" in results:
        plain_r = results["plain BentoML batchable (1 worker)"]
        ratio, lower = ours["rps"] / plain_r["rps"], plain_r["p50"] / ours["p50"]
        print(f"ctcd / plain BentoML: {ratio:.2f}x req/s, p50 {lower:.2f}x lower")
    print(f"ctcd / in-process limit: {ours['rps'] / limit['rps']:.2f}x req/s")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
