"""Recording speed against the model's own forward passes, measured in one process on the same
batches (issue 15, item 5).

    .venv/bin/python bench/recording_speed.py [--model smollm2-135m] [--batch 16]
        [--dialogues 96] [--repeats 3] [--out BENCHMARKS.md]

Each repeat times, over the recording's batches: the plain forward with full logits
(``model(input_ids, attention_mask)``), the decoder body without the unembedding
(``model.base_model(...)``, what the recorder runs), and :func:`record` with all its statistics.
The ratios are taken within a repeat (the three passes run back to back, in a rotating order,
so a busy neighbour slows all three alike) and the median over repeats is reported, with the
load average. Targets: >= 1.0x the full forward, >= 0.95x the decoder body.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import LoadedModel, load
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import EncodedBatch, encode_for_recording, record

PASSES = ("full forward", "decoder body", "record")


@dataclass(frozen=True)
class Speeds:
    """Seconds of each pass per repeat, and the tokens each pass covers."""

    tokens: int
    seconds: dict[str, list[float]]

    def ratio(self, baseline: str) -> float:
        """Median over repeats of the recording's speed relative to ``baseline``."""
        return statistics.median(b / r for b, r in zip(self.seconds[baseline],
                                                       self.seconds["record"], strict=True))

    def rate(self, name: str) -> float:
        return self.tokens / statistics.median(self.seconds[name])


def _forward(module: Callable[..., object], batches: list[EncodedBatch],
             device: torch.device) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for batch in batches:
                module(input_ids=batch.input_ids.to(device),
                       attention_mask=batch.attention_mask.to(device))
    return run


def measure(loaded: LoadedModel, records: list[Record], batch_size: int,
            repeats: int) -> Speeds:
    """Time the three passes ``repeats`` times over the same batches (after one warm-up)."""
    batches = list(encode_for_recording(loaded, records, "all", batch_size))
    config = RecordConfig(token_policy="all", batch_size=batch_size)
    device = loaded.device
    work: dict[str, Callable[[], object]] = {
        "full forward": _forward(loaded.model, batches, device),
        "decoder body": _forward(loaded.model.base_model, batches, device),
        "record": lambda: record(loaded, records, config, progress=False)}
    _forward(loaded.model, batches[:1], device)()
    seconds: dict[str, list[float]] = {name: [] for name in PASSES}
    for repeat in range(repeats):
        for name in PASSES[repeat % 3:] + PASSES[:repeat % 3]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            work[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    return Speeds(sum(int(b.attention_mask.sum()) for b in batches), seconds)


def table(speeds: Speeds) -> str:
    """The Markdown rows of one measurement: each pass's rate, and the two targets."""
    rows = [f"| {name} | {speeds.rate(name):.0f} tok/s | "
            + ", ".join(f"{s:.2f}" for s in speeds.seconds[name]) + " |" for name in PASSES]
    return ("| pass | median rate | seconds per repeat |\n|---|---|---|\n" + "\n".join(rows)
            + f"\n\nRecording: **{speeds.ratio('full forward'):.2f}x** the full forward "
            f"(target >= 1.0x), **{speeds.ratio('decoder body'):.2f}x** the decoder body "
            "(target >= 0.95x), medians of the per-repeat ratios.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dialogues", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()

    loaded = load(args.model)
    records = synthesize(args.dialogues // len(EMOTIONS), seed=11, max_turns=2)
    load_before = os.getloadavg()[0]
    speeds = measure(loaded, records, args.batch, args.repeats)
    load_after = os.getloadavg()[0]
    text = (f"\n## Recording speed, {args.model}, {dt.date.today()}\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, load average {load_before:.1f} before "
            f"and {load_after:.1f} after; torch {torch.__version__}, {loaded.model.dtype}, "
            f"batch {args.batch}, {len(records)} dialogues = {speeds.tokens} tokens, "
            f"{args.repeats} repeats.\n"
            f"Command: `.venv/bin/python bench/recording_speed.py --model {args.model} "
            f"--batch {args.batch} --dialogues {args.dialogues} --repeats {args.repeats}`\n\n"
            + table(speeds))
    print(text)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
