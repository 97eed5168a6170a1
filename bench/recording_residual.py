"""What keeping the residual-stream means costs a recording pass (issue 27: at most 10%).

    .venv/bin/python bench/recording_residual.py [--model smollm2-135m] [--batch 16]
        [--dialogues 96] [--repeats 3]

Times :func:`record` without and with ``RecordConfig(residual=True)`` (the run's recording
when it fits the probe or the directions) on the same synthetic dialogues
(:func:`emoneuron.data.synth.synthesize`, never a run's evaluation split), token policy
``dialogue`` (a run's default). After one warm-up of each, the two alternate, each repeat
starting with the other one, so a busy neighbour slows both alike; the ratio is taken within
a repeat and its median reported with the medians of the seconds and the load average.
Target: with / without <= 1.10. It prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import load
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record

PASSES = ("without", "with residual means")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dialogues", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    records = synthesize(args.dialogues // len(EMOTIONS), seed=11, max_turns=2)
    loaded = load(args.model)
    plain = RecordConfig(batch_size=args.batch)
    configs = {"without": plain, "with residual means": RecordConfig(batch_size=args.batch,
                                                                     residual=True)}
    load_before = os.getloadavg()[0]
    for config in configs.values():  # warm-up, and the C kernel built before the clock
        record(loaded, records, config, progress=False)
    seconds: dict[str, list[float]] = {name: [] for name in PASSES}
    for repeat in range(args.repeats):
        for name in PASSES[repeat % 2:] + PASSES[:repeat % 2]:
            start = time.perf_counter()
            record(loaded, records, configs[name], progress=False)
            seconds[name].append(time.perf_counter() - start)
    load_after = os.getloadavg()[0]
    ratio = statistics.median(w / p for p, w in zip(*seconds.values(), strict=True))
    print(f"\n## Recording with residual means, {dt.date.today()}\n\n"
          f"{args.model} ({loaded.model.dtype}, torch {torch.__version__}) on "
          f"{platform.machine()} with {os.cpu_count()} cores and {torch.get_num_threads()} "
          f"torch threads, load average {load_before:.1f} -> {load_after:.1f}; {len(records)} "
          f"dialogues in batches of {args.batch}, token policy dialogue; {args.repeats} "
          "repeats after one warm-up each, interleaved.\n"
          f"Command: `.venv/bin/python bench/recording_residual.py --model {args.model} "
          f"--batch {args.batch} --dialogues {args.dialogues} --repeats {args.repeats}`\n\n"
          "| record | median seconds | seconds per repeat |\n|---|---:|---|\n"
          + "".join(f"| {name} | {statistics.median(times):.2f} | "
                    f"{', '.join(f'{s:.2f}' for s in times)} |\n"
                    for name, times in seconds.items())
          + f"\nwith / without: **{ratio:.3f}x** (median of the per-repeat ratios; target "
          "<= 1.10)")


if __name__ == "__main__":
    main()
