"""bench/positive_control.py evaluates on dialogues of its own: its data seed is none a preset
runs with, and none of its dialogues is in the demo's evaluation split."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from emoneuron.config import PRESETS, preset_config
from emoneuron.data.dedup import overlap
from emoneuron.data.split import split
from emoneuron.data.synth import synthesize

ROOT = Path(__file__).resolve().parents[2]
# The study is replicated at a few data seeds (issue 23); a bench seed must stay clear of them.
REPLICATION_SEEDS = range(10)


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("positive_control",
                                                  ROOT / "bench" / "positive_control.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_bench_data_seed_is_no_presets_seed() -> None:
    bench = _load_bench()
    preset_seeds = {preset_config(name).seed for name in ("", *PRESETS)}
    assert bench.DATA_SEED not in preset_seeds | set(REPLICATION_SEEDS)


def test_the_bench_dialogues_are_not_the_demos_evaluation_dialogues() -> None:
    bench = _load_bench()
    demo = preset_config("demo")
    records = synthesize(demo.per_emotion, demo.seed, demo.max_turns)
    demo_evaluation = split(records, demo.eval_fraction, demo.seed, demo.shots).evaluate
    bench_splits = bench.bench_splits()
    bench_records = [*bench_splits.fewshot, *bench_splits.identify, *bench_splits.evaluate]
    shared = overlap(demo_evaluation, bench_records)
    assert (shared.exact_second, shared.near_second) == (0, 0)
    # The check can fail: the bench's old data (the demo's own, seed 0) was the same split.
    old = split(synthesize(50, seed=0, max_turns=2), 0.3, 0, 1).evaluate
    assert overlap(demo_evaluation, old).exact_second == len(demo_evaluation)
