"""CT effectiveness: the same drifting stream under four retraining policies, replayed with ctcd's own code.

Policies: `never` (train once), `weekly` (every 7 days, sliding window), `daily` (every day, sliding window:
the costly reference) and `ctcd` (monitoring signals -> `tasks.policy.decide`, retraining from its
`window_start`). Every training goes through ctcd's model gate; see `benchmarks/ct_simulation.py` for the
replay's order of events. Two streams: the default config's Agrawal scenario and river's SEA generator
with its own abrupt drifts (`benchmarks/configs/sea.yaml`, not used to tune anything).

Run: .venv/bin/python benchmarks/bench_ct_effectiveness.py [--days 40] [--rows-per-day 2000]
     [--stream agrawal|sea|both] [--search-budget 1] [--n-estimators 100] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.ct_simulation import (  # noqa: E402
    AFTER_ONSET_DAYS,
    POLICIES,
    PRE_DRIFT_DAYS,
    FitCache,
    Policy,
    PolicyRun,
    PolicySummary,
    Scenario,
    agrawal_scenario,
    bench_config,
    check_targets,
    reference_levels,
    replay,
    sea_scenario,
    summarize,
)
from ctcd.config import load_config  # noqa: E402
from tasks import training  # noqa: E402

DEFAULT_CONFIG = HERE.parent / "configs" / "default.yaml"
SEA_CONFIG = HERE / "configs" / "sea.yaml"
# SEA's classic setting: four concepts in turn, abrupt switches, 10% label noise.
SEA_SCHEDULE = {1: 0, 11: 1, 21: 2, 31: 3}
SEA_NOISE = 0.1
SEA_SEED = 7
LEGEND = """
mean acc: mean daily accuracy over served days (rejected batches are not served).
acc3d: mean accuracy of the onset day and the {after} days after it.
recov: days from the onset to the first day whose accuracy is within {tolerance} of the pre-drift level
  (0: it never dropped; not rec.: not before the next onset or the end; n/a: nothing served before the
  onset). Pre-drift level: the best mean accuracy any policy had over the {before} served days before the
  onset, so a policy already degraded by an earlier drift does not "recover" to its own low level.
train s: window + search and baseline fits + holdout evaluation + gate; fit s and gate s are parts of it.
worse promoted: promotions whose holdout primary metric is worse than the replaced model's by more than
  gates.model.max_regression (re-computed from the probabilities, not read from the gate's record).
worse next day: the same comparison on the next served day's batch (out of sample, for information).
"""


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _days(v: int | None) -> str:
    return "not rec." if v is None else str(v)


def print_table(scenario: Scenario, summaries: dict[Policy, PolicySummary]) -> None:
    """The per-policy table, then the ratios against `daily`."""
    labels = [o.label for o in scenario.onsets]
    head = ["policy", "mean acc"] + [f"acc3d {lb}" for lb in labels] + [f"recov {lb}" for lb in labels]
    head += [
        "trainings",
        "train s",
        "fit s",
        "gate s",
        "promoted",
        "rejected",
        "worse promoted",
        "worse next day",
    ]
    rows = []
    for s in summaries.values():
        rows.append(
            [s.policy, _f(s.mean_accuracy, 4)]
            + [_f(s.after_onset[lb]) for lb in labels]
            + [_days(s.recovery_days[lb]) if s.pre_drift[lb] is not None else "n/a" for lb in labels]
            + [
                str(s.trainings),
                f"{s.training_seconds:.1f}",
                f"{s.fit_seconds:.1f}",
                f"{s.gate_seconds:.1f}",
                str(s.promotions),
                str(s.rejected),
                str(s.worse_promotions),
                str(s.worse_next_day),
            ]
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    daily = summaries.get("daily")
    if daily is None:
        return
    print("\nratios vs daily (policy / daily):")
    for s in summaries.values():
        acc = s.mean_accuracy / daily.mean_accuracy if daily.mean_accuracy else math.nan
        n = s.trainings / daily.trainings if daily.trainings else math.nan
        t = s.training_seconds / daily.training_seconds if daily.training_seconds else math.nan
        print(f"  {s.policy:<7} mean accuracy x{acc:.4f}  trainings x{n:.3f}  training time x{t:.3f}")


def print_days(scenario: Scenario, runs: dict[Policy, PolicyRun]) -> None:
    """Daily accuracy per policy; `*` marks a day the policy trained and promoted, `o` trained and kept."""
    onset_at = {o.day: o.label for o in scenario.onsets}
    print("day  " + "  ".join(f"{p:>8}" for p in runs) + "  event")
    for day in scenario.days:
        cells = []
        for run in runs.values():
            mark = "".join("*" if t.passed else "o" for t in run.trainings if t.day == day.day)
            cells.append(f"{_f(run.accuracy.get(day.day))}{mark[:1] or ' '}".rjust(8))
        note = onset_at.get(day.day, "") or (f"rejected: {day.rejected}" if day.rejected else "")
        print(f"{day.day:>3}  " + "  ".join(cells) + f"  {note}")


def run_scenario(
    scenario: Scenario, policies: list[Policy], warmup: int, tolerance: float, verbose: bool
) -> dict:
    """Replay every policy on one scenario, print the tables and targets, and return the results."""
    cfg = scenario.cfg
    device = training.choose_device(cfg.training.device)
    print(
        f"\n=== {scenario.name}: {len(scenario.days)} days x {len(scenario.days[0].labels)} rows, "
        f"label delay {cfg.dataset.label_delay_batches} day(s), first champion trained on day {warmup}"
    )
    print("onsets: " + "; ".join(f"{o.label} ({o.what})" for o in scenario.onsets))
    rejected = [f"day {d.day} ({d.rejected})" for d in scenario.days if d.rejected]
    print("rejected by the data gate: " + (", ".join(rejected) or "none"))
    print(
        f"model {cfg.model.flavor} (baseline {cfg.model.baseline}), search budget {cfg.model.search.budget}, "
        f"params {cfg.model.params}, gate {cfg.gates.model.primary_metric} bootstrap "
        f"{cfg.gates.model.bootstrap_samples}, device {device.device} ({device.reason})"
    )
    print(
        f"policy: retrain_on {cfg.drift.retrain_on}, accuracy_drop {cfg.drift.accuracy_drop}, "
        f"cooldown {cfg.drift.cooldown_batches} d, training window {cfg.training.window_batches} d"
    )
    cache = FitCache()
    runs: dict[Policy, PolicyRun] = {}
    started = time.perf_counter()
    for p in policies:
        t0 = time.perf_counter()
        runs[p] = replay(scenario, p, warmup, cache, device, on_day=print if verbose else None)
        print(f"  replayed {p:<7} in {time.perf_counter() - t0:6.1f} s")
    levels = reference_levels(runs.values(), scenario)
    summaries = {p: summarize(r, scenario, tolerance, levels) for p, r in runs.items()}
    print(f"\nreplay time {time.perf_counter() - started:.1f} s\n")
    print_days(scenario, runs)
    print(LEGEND.format(after=AFTER_ONSET_DAYS - 1, tolerance=tolerance, before=PRE_DRIFT_DAYS))
    print("pre-drift levels: " + ", ".join(f"{k} {_f(v)}" for k, v in levels.items()) + "\n")
    print_table(scenario, summaries)
    out: dict = {"scenario": scenario.name, "summaries": {p: asdict(s) for p, s in summaries.items()}}
    if "ctcd" in runs:
        print("\nctcd monitoring decisions other than 'none':")
        for m in runs["ctcd"].monitoring:
            if m.action != "none":
                print(f"  day {m.day}: {m.action}: {m.reason}")
        print("ctcd trainings:")
        for t in runs["ctcd"].trainings:
            span = f"{t.window[0]}..{t.window[-1]}" if t.window else "-"
            what = t.error or t.summary
            print(f"  day {t.day} ({t.reason}) window {span} ({len(t.window)} batches): {what}")
    if "ctcd" in summaries and "daily" in summaries:
        print("\ntargets:")
        checks = check_targets(summaries, scenario)
        for c in checks:
            print(f"  {'PASS' if c.passed else 'FAIL'}  {c.name}: {c.detail}")
        out["targets"] = [asdict(c) for c in checks]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the Agrawal scenario's config")
    parser.add_argument("--sea-config", type=Path, default=SEA_CONFIG)
    parser.add_argument("--stream", choices=["agrawal", "sea", "both"], default="both")
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument(
        "--warmup-days", type=int, default=4, help="the first champion is trained on this day"
    )
    parser.add_argument(
        "--policies", default=",".join(POLICIES), help="comma-separated subset of " + ",".join(POLICIES)
    )
    parser.add_argument(
        "--search-budget", type=int, default=1, help="override model.search.budget (0: config)"
    )
    parser.add_argument(
        "--n-estimators", type=int, default=100, help="override model.params n_estimators (0: config)"
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="XGBoost threads (0: XGBoost's default)")
    parser.add_argument(
        "--bootstrap-samples",
        type=int,
        default=100,
        help="override the gate's bootstrap samples (0: the config's); most of the run's time is the gate",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.02, help="recovered: accuracy within this of pre-drift"
    )
    parser.add_argument("--json", type=Path, help="also write the summaries and targets here")
    parser.add_argument("--verbose", action="store_true", help="print every training's gate decision")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}")

    def prepare(path: Path):
        return bench_config(
            load_config(path),
            args.search_budget or None,
            args.n_estimators or None,
            args.bootstrap_samples or None,
            args.n_jobs or None,
        )

    print(f"command: {' '.join(sys.argv)}")
    results = []
    started = time.perf_counter()
    if args.stream in ("agrawal", "both"):
        scenario = agrawal_scenario(prepare(args.config), args.days, args.rows_per_day)
        results.append(run_scenario(scenario, policies, args.warmup_days, args.tolerance, args.verbose))
    if args.stream in ("sea", "both"):
        schedule = {d: v for d, v in SEA_SCHEDULE.items() if d <= args.days}
        print(f"\nSEA schedule (first day -> variant): {schedule}, noise {SEA_NOISE}, seed {SEA_SEED}")
        scenario = sea_scenario(
            prepare(args.sea_config), args.days, args.rows_per_day, schedule, SEA_NOISE, SEA_SEED
        )
        results.append(run_scenario(scenario, policies, args.warmup_days, args.tolerance, args.verbose))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(
            json.dumps({"command": sys.argv, "results": results}, indent=2, default=str) + "\n"
        )


if __name__ == "__main__":
    main()
