"""Cost of a ``last``-scope condition: the full recompute against the kept unchanged positions.

    .venv/bin/python bench/last_scope.py [--model smollm2-135m] [--conditions 4] [--dialogues 30]
                                         [--threads N]

K random zero-ablations at the ``last`` scope (1% of each layer's neurons, a new draw per
condition, as the set-level test's random sets) are evaluated on the same dialogues by two
classifiers that differ only in ``last_scope_bytes``: 0 recomputes every query position (the
path before the kept positions), the default keeps each batch's unchanged positions and runs only
each query's last token. The two are timed in turn on each condition, so a busy machine slows
both alike; the kept path's first condition, which also computes what it keeps, is reported
apart. The kept path's passes are small (one token per query): on cores busy with other jobs
two torch threads lose more to thread hand-off there than the full path does (``--threads 1``
shows the difference). Appends one table to BENCHMARKS.md. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from pathlib import Path

import numpy as np
import torch

from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import LoadedModel, load

ROOT = Path(__file__).resolve().parent.parent
SHARE = 0.01  # of each layer's neurons, per random condition


def random_ablations(loaded: LoadedModel, count: int, seed: int = 0) -> list[Ablation]:
    rng = np.random.default_rng(seed)
    per_layer = max(1, round(SHARE * loaded.width))
    return [Ablation.of({layer: rng.choice(loaded.width, per_layer, replace=False).tolist()
                         for layer in range(loaded.n_layers)}, tokens="last")
            for _ in range(count)]


def timed_scores(classifier: Classifier, records: list[Record],
                 ablation: Ablation) -> tuple[float, np.ndarray]:
    """Wall seconds of one condition as the sweep evaluates it, and its scores."""
    start = time.perf_counter()
    with applied(classifier.loaded, ablation) as scope:
        scores = classifier.predict(records, unchanged_below=ablation.first_layer, scope=scope)
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--conditions", type=int, default=4)
    parser.add_argument("--dialogues", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load(args.model)
    per_emotion = -(-args.dialogues // len(EMOTIONS))
    evaluation = synthesize(per_emotion, seed=11, max_turns=2)[:args.dialogues]
    shots = order_shots(synthesize(1, seed=12, max_turns=2), 0)
    full = Classifier(loaded, shots, args.batch, last_scope_bytes=0)
    kept = Classifier(loaded, shots, args.batch)
    full.predict(evaluation[:2])  # warm-up
    seconds: dict[str, list[float]] = {"full": [], "kept": []}
    differences = []
    for ablation in random_ablations(loaded, args.conditions):
        full_seconds, expected = timed_scores(full, evaluation, ablation)
        kept_seconds, scores = timed_scores(kept, evaluation, ablation)
        seconds["full"].append(full_seconds)
        seconds["kept"].append(kept_seconds)
        differences.append(float(np.abs(scores - expected).max()))
        agree = bool((scores.argmax(1) == expected.argmax(1)).all())
        print(f"full {full_seconds:.2f} s, kept {kept_seconds:.2f} s, max |difference| "
              f"{differences[-1]:.1e}, same predictions: {agree}", flush=True)
    queries = len(evaluation) + len(kept.answers.calibration())
    write_table(args, loaded, kept, queries, seconds, max(differences))


def write_table(args: argparse.Namespace, loaded: LoadedModel, kept: Classifier, queries: int,
                seconds: dict[str, list[float]], difference: float) -> None:
    # Medians: one condition slowed by another job's burst moves a mean more than the ratio.
    full = float(np.median(seconds["full"]))
    first, later = seconds["kept"][0], float(np.median(seconds["kept"][1:]))
    total = sum(seconds["full"]) / sum(seconds["kept"])
    lines = [
        f"\n## `last` scope from the kept unchanged positions ({args.model}, {dt.date.today()})\n",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{platform.platform()}; torch {torch.__version__}, {loaded.model.dtype}; "
        f"{args.conditions} random `last`-scope zero-ablations ({SHARE:.0%} of each layer's "
        f"neurons) on {args.dialogues} dialogues ({queries} queries with the calibration one), "
        f"{kept.style} prompt of {len(kept.prefix_ids)} prefix tokens, batch {args.batch}; "
        "both paths timed in turn on each condition, in one process.",
        f"Command: `.venv/bin/python bench/last_scope.py --conditions {args.conditions} "
        f"--dialogues {args.dialogues}{f' --threads {args.threads}' if args.threads else ''}`\n",
        "| path | median seconds per condition | speed-up |",
        "|---|---:|---:|",
        f"| full recompute (`last_scope_bytes=0`, the path before) | {full:.2f} | baseline |",
        f"| kept positions, first condition (computes what it keeps) | {first:.2f} | "
        f"{full / first:.2f}x |",
        f"| kept positions, later conditions | {later:.2f} | {full / later:.1f}x |",
        f"| kept positions, all {args.conditions} conditions (total time) | - | "
        f"{total:.1f}x |",
        "",
        f"Kept: {kept.kept_bytes / 2**20:.0f} MiB for {queries} queries "
        f"({kept.kept_bytes / queries / 2**20:.1f} MiB per query; the prefix once besides). "
        f"Largest score difference between the paths: {difference:.1e}.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    with args.out.open("a", encoding="utf-8") as handle:
        handle.write(table)


if __name__ == "__main__":
    main()
