"""Benchmarks of issue 9's targets, each a ratio against a baseline measured in the same run.

    .venv/bin/python bench/run.py [--model smollm2-135m] [--batch 16] [--dialogues 96]

Appends one table to BENCHMARKS.md (machine, model, batch, tokens, each figure, each ratio).
Nothing here is a test: CI times nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.execution import Sources, ablation_for
from emoneuron.causal.evaluation.intervene import applied
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import LoadedModel, load
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import encode_for_recording, record
from emoneuron.selection.identify import IdentifyConfig, identify

ROOT = Path(__file__).resolve().parent.parent


def timed(work: Callable[[], object], repeats: int = 2) -> float:
    """Best of ``repeats`` wall times: the least disturbed by the rest of the machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def plain_forward_rate(loaded: LoadedModel, records: list[Record], batch: int) -> float:
    """Tokens/s of a plain batched forward pass with full logits over the recording batches."""
    batches = list(encode_for_recording(loaded, records, "all", batch))
    tokens = sum(int(b.attention_mask.sum()) for b in batches)

    def forward() -> None:
        with torch.inference_mode():
            for b in batches:
                loaded.model(input_ids=b.input_ids, attention_mask=b.attention_mask)

    return tokens / timed(forward)


def greedy_reference(classifier: Classifier, records: list[Record]) -> tuple[float, float]:
    """The reconstruction's protocol: batch size 1, 8 greedy tokens, first label found in the
    text. Returns (seconds per example, accuracy)."""
    loaded = classifier.loaded
    correct = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for record_ in records:
            query = loaded.tokenizer.encode(classifier.query(record_), add_special_tokens=False)
            ids = torch.tensor([classifier.prefix_ids + query])
            out = cast(Any, loaded.model).generate(ids, attention_mask=torch.ones_like(ids),
                                        max_new_tokens=8, do_sample=False,
                                        pad_token_id=loaded.tokenizer.pad_token_id)
            text = str(loaded.tokenizer.decode(out[0, ids.shape[1]:])).lower()
            found = [e for e in EMOTIONS if e in text]
            correct += bool(found) and min(found, key=text.index) == record_.emotion
    return (time.perf_counter() - start) / len(records), correct / len(records)


def accuracy(classifier: Classifier, records: list[Record]) -> float:
    truth = np.array([EMOTIONS.index(r.emotion) for r in records])
    return float(np.mean(classifier.predict(records).argmax(axis=1) == truth))


def load_seconds(model: str) -> float:
    """Wall time of ``load`` in a fresh process (the model already cached; importing torch and
    transformers, about 5 s here, is not counted)."""
    code = ("import time; from emoneuron.models import load; t = time.perf_counter(); "
            f"load({model!r}); print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def recording_peak_mib(model: str, per_emotion: int, batch: int) -> float:
    """Peak resident memory of a fresh process that records ``per_emotion`` x 6 dialogues."""
    code = ("import resource; from emoneuron.models import load; "
            "from emoneuron.data.synth import synthesize; "
            "from emoneuron.recording.config import RecordConfig; "
            "from emoneuron.recording.recorder import record; "
            f"m = load({model!r}); record(m, synthesize({per_emotion}, seed=3, max_turns=2), "
            f"RecordConfig(token_policy='all', batch_size={batch}), progress=False); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dialogues", type=int, default=96)
    parser.add_argument("--greedy", type=int, default=12, help="examples for the slow baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    first_load = time.perf_counter()
    loaded = load(args.model)
    first_load = time.perf_counter() - first_load
    records = synthesize(args.dialogues // len(EMOTIONS) + 1, seed=11, max_turns=2)
    shots = order_shots(records, 0)
    evaluation = [r for r in records if r not in shots][:args.dialogues]
    rows: list[tuple[str, str, str]] = []

    plain = plain_forward_rate(loaded, evaluation, args.batch)
    tokens = sum(int(b.attention_mask.sum())
                 for b in encode_for_recording(loaded, evaluation, "all", args.batch))
    settings = RecordConfig(token_policy="all", batch_size=args.batch)
    recording = tokens / timed(lambda: record(loaded, evaluation, settings, progress=False))
    small, large = (recording_peak_mib(args.model, n, args.batch) for n in (16, 64))
    rows += [("plain batched forward, full logits", f"{plain:.0f} tok/s", "baseline"),
             ("1. recording, all statistics", f"{recording:.0f} tok/s",
              f"{recording / plain:.2f}x plain (target >= 1.0x)"),
             ("1. recording peak memory, 96 vs 384 dialogues", f"{small:.0f} MiB vs "
              f"{large:.0f} MiB", f"{large / small:.2f}x for 4x the data (target: flat)")]

    classifier = Classifier(loaded, shots, args.batch)
    own = [len(loaded.tokenizer.encode(classifier.query(r), add_special_tokens=False))
           for r in evaluation]
    per_example = timed(lambda: classifier.predict(evaluation)) / len(evaluation)
    floor = float(np.mean(own)) / plain
    slow, slow_accuracy = greedy_reference(classifier, evaluation[:args.greedy])
    rows += [
        ("2. masked-evaluation cost per example", f"{per_example * 1000:.0f} ms "
         f"({np.mean(own):.0f} own tokens)", f"{per_example / floor:.2f}x its own tokens at "
         "the plain rate (target <= 1.3x)"),
        ("2. batch-1 greedy 8 tokens (reconstruction)", f"{slow * 1000:.0f} ms/example",
         f"ours {slow / per_example:.1f}x more examples/s (target >= 5x)"),
        ("2. accuracy, label log-prob vs greedy", f"{accuracy(classifier, evaluation):.2f} vs "
         f"{slow_accuracy:.2f}", f"greedy on the first {args.greedy} only"),
    ]

    recorded = record(loaded, records, progress=False)
    sets = identify(recorded, IdentifyConfig(assignment="argmax", share=0.05), args.model)
    sources = Sources(recorded.stats())

    def condition_seconds(layer_range: str) -> float:
        ablation = ablation_for(Condition("mask", "fear", layer_range), sets, sources)

        def work() -> None:
            with applied(loaded, ablation):
                classifier.predict(evaluation, unchanged_below=ablation.first_layer)

        # Best of two: a sweep computes the layers below the range once, on its first condition
        # with that range, and reuses them for every later one.
        return timed(work)

    everything, top = condition_seconds("all"), condition_seconds("top")
    rows.append(("3. sweep condition, top third vs all layers (lower layers reused)",
                 f"{top:.1f} s vs "
                 f"{everything:.1f} s", f"{top / everything:.2f}x (target <= 0.5x)"))
    second = load_seconds(args.model)
    rows.append(("4. load of the cached model (fresh process)", f"{second:.2f} s",
                 f"target <= 3 s; this process's load: {first_load:.1f} s"))
    write_table(args, loaded, tokens, rows)


def write_table(args: argparse.Namespace, loaded: LoadedModel, tokens: int,
                rows: list[tuple[str, str, str]]) -> None:
    header = (f"\n## {args.model}, {dt.date.today()}\n\n"
              f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
              f"{platform.platform()}; torch {torch.__version__}, {loaded.model.dtype}, "
              f"batch {args.batch}, {args.dialogues} dialogues = {tokens} tokens.\n"
              f"Command: `.venv/bin/python bench/run.py --model {args.model} --batch "
              f"{args.batch} --dialogues {args.dialogues}`\n\n"
              "| measurement | figure | ratio |\n|---|---|---|\n")
    table = header + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    print(table)
    if not args.out.exists():
        args.out.write_text("# Benchmarks\n\nEach table is one run of `bench/run.py`; every ratio "
                            "is against a baseline measured in the same run.\n")
    with args.out.open("a") as handle:
        handle.write(table)


if __name__ == "__main__":
    main()
