"""Recording speed against the model's own forward passes, measured in one process on the same
batches (issue 15, item 5).

    .venv/bin/python bench/recording_speed.py [--models smollm2-135m ...] [--batch 16]
        [--dialogues 210] [--token-policy all] [--repeats 3] [--out BENCHMARKS.md]

Each repeat times, over the recording's batches: the plain forward with full logits
(``model(input_ids, attention_mask)``), the decoder body without the unembedding
(``model.base_model(...)``, what the recorder runs), :func:`record` with all its statistics
(``--kernel auto``: the compiled C pass, :mod:`emoneuron.recording.kernel`), and :func:`record`
with torch operators (``--kernel torch``, the fallback and the baseline of the kernel). The
ratios are taken within a repeat (the passes run back to back, in a rotating order, so a busy
neighbour slows all alike) and the median over repeats is reported, with the load average.
Targets: >= 1.0x the full forward, >= 0.95x the decoder body.

The default data is the size of the demo's recording (its 210 training dialogues, two turns
each), and the default token policy ``all`` counts every token, the recorder's dearest case
(``dialogue``, the default of a run, leaves out speaker tags and line breaks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import LoadedModel, load
from emoneuron.recording.config import TOKEN_POLICIES, RecordConfig, TokenPolicy
from emoneuron.recording.kernel import statistics_kernel
from emoneuron.recording.recorder import EncodedBatch, encode_for_recording, record

PASSES = ("full forward", "decoder body", "record", "record, torch operators")


@dataclass(frozen=True)
class Speeds:
    """Seconds of each pass per repeat, and the tokens each pass covers."""

    tokens: int
    seconds: dict[str, list[float]]

    def ratio(self, baseline: str, recording: str = "record") -> float:
        """Median over repeats of ``recording``'s speed relative to ``baseline``."""
        return statistics.median(b / r for b, r in zip(self.seconds[baseline],
                                                       self.seconds[recording], strict=True))

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


def measure(loaded: LoadedModel, records: list[Record], batch_size: int, repeats: int,
            token_policy: TokenPolicy = "all", passes: tuple[str, ...] = PASSES) -> Speeds:
    """Time ``passes`` ``repeats`` times over the same batches (after one warm-up)."""
    batches = list(encode_for_recording(loaded, records, token_policy, batch_size))
    config = RecordConfig(token_policy=token_policy, batch_size=batch_size)
    with_torch = replace(config, kernel="torch")
    device = loaded.device
    work: dict[str, Callable[[], object]] = {
        "full forward": _forward(loaded.model, batches, device),
        "decoder body": _forward(loaded.model.base_model, batches, device),
        "record": lambda: record(loaded, records, config, progress=False),
        "record, torch operators": lambda: record(loaded, records, with_torch, progress=False)}
    _forward(loaded.model, batches[:1], device)()
    statistics_kernel(config.kernel)  # built before the clock starts (about 0.1 s)
    seconds: dict[str, list[float]] = {name: [] for name in passes}
    for repeat in range(repeats):
        for name in passes[repeat % len(passes):] + passes[:repeat % len(passes)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            work[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    return Speeds(sum(int(b.attention_mask.sum()) for b in batches), seconds)


def table(rows: dict[str, Speeds]) -> str:
    """The Markdown table of one run: each model's rates, ratios and seconds per repeat."""
    lines = ["| model | tokens | full forward | decoder body | record | record, torch operators "
             "| record / full forward (target >= 1.0) | record / decoder body (target >= 0.95) "
             "| torch operators / decoder body | seconds per repeat (full, body, record, torch "
             "operators) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for model, speeds in rows.items():
        seconds = "; ".join(", ".join(f"{s:.2f}" for s in speeds.seconds[name])
                            for name in PASSES)
        lines.append(f"| {model} | {speeds.tokens} | "
                     + " | ".join(f"{speeds.rate(name):.0f} tok/s" for name in PASSES)
                     + f" | **{speeds.ratio('full forward'):.2f}x** | "
                     f"**{speeds.ratio('decoder body'):.2f}x** | "
                     f"{speeds.ratio('decoder body', 'record, torch operators'):.2f}x | "
                     f"{seconds} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dialogues", type=int, default=210)
    parser.add_argument("--token-policy", choices=TOKEN_POLICIES, default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()

    records = synthesize(args.dialogues // len(EMOTIONS), seed=11, max_turns=2)
    load_before = os.getloadavg()[0]
    rows: dict[str, Speeds] = {}
    dtypes = set()
    for model in args.models:
        loaded = load(model)
        dtypes.add(str(loaded.model.dtype))
        rows[model] = measure(loaded, records, args.batch, args.repeats, args.token_policy)
        print(table({model: rows[model]}).splitlines()[-1], flush=True)  # kept if stopped
        del loaded
    load_after = os.getloadavg()[0]
    kernel = statistics_kernel("auto")
    built = f"`{' '.join(kernel.command)}`" if kernel else "none (no C compiler)"
    text = (f"\n## Recording speed, {dt.date.today()}\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, load average {load_before:.1f} before "
            f"and {load_after:.1f} after; torch {torch.__version__}, {', '.join(sorted(dtypes))}, "
            f"batch {args.batch}, {len(records)} dialogues, token policy {args.token_policy}, "
            f"{args.repeats} repeats; medians of the per-repeat ratios; kernel built with "
            f"{built}.\n"
            f"Command: `.venv/bin/python bench/recording_speed.py --models "
            f"{' '.join(args.models)} --batch {args.batch} --dialogues {args.dialogues} "
            f"--token-policy {args.token_policy} --repeats {args.repeats}`\n\n" + table(rows))
    print(text)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
