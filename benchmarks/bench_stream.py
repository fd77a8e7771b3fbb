"""Agrawal rows/s: river's pure-Python generator vs ctcd's vectorized reproduction (same rows, bit for bit).

Run: .venv/bin/python benchmarks/bench_stream.py [--rows 100000] [--repeats 3]
Also times the whole default stream (30 days x 2000 rows with the scenario, Parquet bytes included).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctcd.config import load_config
from ctcd.stream.generator import agrawal_frame
from ctcd.stream.scenario import batch_bytes, day_seed, generate_day


def river_frame(seed: int, n: int, function: int, perturbation: float) -> pd.DataFrame:
    """The peer: river's generator, collected into the same DataFrame."""
    from river.datasets import synth

    gen = synth.Agrawal(classification_function=function, seed=seed, perturbation=perturbation)
    rows = list(gen.take(n))
    frame = pd.DataFrame([x for x, _ in rows])
    frame["y"] = [y for _, y in rows]
    return frame


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.rows

    print(f"{'case':<34} {'river rows/s':>13} {'vectorized rows/s':>18} {'speed-up':>9}  identical")
    for function, perturbation in [(0, 0.0), (9, 0.0), (2, 0.1)]:
        t_river, ref = best_of(1, lambda f=function, p=perturbation: river_frame(11, n, f, p))
        t_ours, ours = best_of(args.repeats, lambda f=function, p=perturbation: agrawal_frame(11, n, f, p))
        same = np.array_equal(ref.to_numpy(np.float64), ours.to_numpy(np.float64))
        print(
            f"{f'{n} rows, function {function}, noise {perturbation}':<34} {n / t_river:>13,.0f} "
            f"{n / t_ours:>18,.0f} {t_river / t_ours:>8.1f}x  {same}"
        )

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "default.yaml")
    days, rows = cfg.stream.days, cfg.stream.rows_per_day

    def whole_stream() -> int:
        return sum(len(batch_bytes(generate_day(cfg, day))[0]) for day in range(1, days + 1))

    def river_stream() -> int:
        return sum(len(river_frame(day_seed(cfg.stream.seed, d), rows, 0, 0.0)) for d in range(1, days + 1))

    t_stream, size = best_of(args.repeats, whole_stream)
    t_river_stream, _ = best_of(1, river_stream)
    print(
        f"default stream ({days} days x {rows} rows): vectorized generate_day + Parquet bytes "
        f"{t_stream:.2f} s ({days * rows / t_stream:,.0f} rows/s, {size / 1e6:.1f} MB features); "
        f"river rows alone {t_river_stream:.2f} s; ratio {t_river_stream / t_stream:.1f}x"
    )


if __name__ == "__main__":
    main()
