"""Speed-up of the Ray executor: 2 local workers against 1, each with one CPU core, on the same
recording and the same conditions; the local executor (one process, all cores) beside them.

    .venv/bin/python bench/ray_speedup.py [--model smollm2-135m] [--per-emotion 20]

Appends one table to BENCHMARKS.md. Worker start-up (process, imports, model load) is timed
apart from the work, as a cluster pays it once per run, not per task.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from emoneuron.causal.conditions.grid import grid
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.execution import EvaluationSetup, Sources, execute
from emoneuron.data.schema import EMOTIONS
from emoneuron.data.synth import synthesize
from emoneuron.executors import ExecutorConfig, LocalExecutor, RayExecutor
from emoneuron.models.loading import ModelSpec, load
from emoneuron.recording.recorder import record, record_sharded
from emoneuron.selection.identify import IdentifyConfig, identify

ROOT = Path(__file__).resolve().parent.parent


def seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def start_workers(executor: RayExecutor, setup: Callable[[], object], workers: int) -> None:
    """Workers with ``setup``'s state, kept by ``executor`` for the next map of that setup."""
    executor.map(lambda state, item: item, [0] * workers, lambda index, result: None, setup,
                 progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--per-emotion", type=int, default=20)
    args = parser.parse_args()

    loaded = load(args.model)
    records = synthesize(args.per_emotion, seed=0, max_turns=2)
    shots = order_shots(records, seed=0)
    evaluation = [r for r in records if r not in shots]
    classifier = Classifier(loaded, shots)
    recording = record(loaded, evaluation, progress=False)
    sets = identify(recording, IdentifyConfig(), args.model)
    sources = Sources(recording.stats())
    # One mask and one random control per emotion, each on every emotion's dialogues.
    conditions = [c for c in grid(Design(control_seeds=(0,), controls=("random",),
                                                 proportions=(), dose_strengths=()))
                  if c.kind in ("mask", "control")][:2 * len(EMOTIONS)]
    conditions = [replace(c, eval_emotions=EMOTIONS) for c in conditions]
    spec = ModelSpec(args.model)
    shards = 8
    rows: list[tuple[str, float, float, float]] = []  # name, start-up, record, conditions

    def conditions_with(executor: LocalExecutor | RayExecutor, name: str) -> float:
        store = ConditionStore(Path(f"/tmp/bench-ray-{name}-{time.time_ns()}.jsonl"), "bench")
        setup = EvaluationSetup.of(classifier, spec, evaluation)
        return seconds(lambda: execute(classifier, sets, sources, evaluation, conditions,
                                       store, progress=False, executor=executor, setup=setup))

    threads = torch.get_num_threads()
    local = LocalExecutor()
    rows.append((f"local, 1 process, {threads} threads", 0.0,
                 seconds(lambda: record_sharded(local, loaded, evaluation, shards,
                                                progress=False)),
                 conditions_with(local, "local")))
    for workers in (1, 2):
        executor = RayExecutor(ExecutorConfig("ray", "local", workers=workers))
        # Start-up: the recording workers (a process each, imports, the model loaded).
        startup = seconds(partial(start_workers, executor, spec.load, workers))
        recorded = seconds(partial(record_sharded, executor, loaded, evaluation, shards,
                                   spec.load, progress=False))
        start_workers(executor, EvaluationSetup.of(classifier, spec, evaluation), workers)
        evaluated = conditions_with(executor, f"ray{workers}")
        executor.close()
        rows.append((f"Ray, {workers} worker(s) x 1 core", startup, recorded, evaluated))

    base = rows[1]
    tokens = int(recording.tokens.sum())
    lines = [
        f"\n## Ray executor speed-up ({dt.date.today()})\n",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch threads here, {platform.platform()}. Model {args.model}; recording "
        f"{len(evaluation)} dialogues ({tokens} counted tokens) in {shards} shards; "
        f"{len(conditions)} conditions on {len(evaluation)} dialogues each. Speed-up = the "
        "1-worker Ray time / this row's time, measured in the same run.\n",
        "| executor | worker start-up s | recording s | speed-up | conditions s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, startup, recorded, evaluated in rows:
        lines.append(f"| {name} | {startup:.1f} | {recorded:.1f} | {base[2] / recorded:.2f}x "
                     f"| {evaluated:.1f} | {base[3] / evaluated:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as handle:
        handle.write(table)


if __name__ == "__main__":
    main()
