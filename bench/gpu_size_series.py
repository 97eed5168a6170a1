"""The four-model size series on one GPU in bfloat16, with its speed figures, as one Markdown
table ready for BENCHMARKS.md (issue 15, item 4).

    .venv/bin/python bench/gpu_size_series.py --out runs/gpu-series        # one CUDA GPU
    .venv/bin/python bench/gpu_size_series.py --smoke --out /tmp/smoke     # CPU check, minutes

For each embedded model (``make models-extra`` first), in one process: the recording speed
against a plain forward of the same batches (bench/recording_speed.py; target >= 0.9x the full
forward), then ``emoneuron.run`` with the same preset, data and seed (the demo preset: the full
causal grid with the sweep), timed, with its conditions per second; then ``write_comparison``
of all runs. ``load(name, device="cuda")`` picks bfloat16 on GPUs. The table goes to
``OUT/gpu-size-series.md``; the smollm2-135m row's run is the demo (``make demo``), so its
wall time is the demo's. ``--smoke`` runs tiny sizes on one small model on the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from recording_speed import PASSES, measure

from emoneuron.app.run import design_of, run
from emoneuron.causal.conditions.grid import grid
from emoneuron.config import preset_config
from emoneuron.data.schema import EMOTIONS
from emoneuron.data.synth import synthesize
from emoneuron.models.embedded import EMBEDDED
from emoneuron.models.loading import load
from emoneuron.reporting.comparison_page import write_comparison

# Smoke: the causal grid at its smallest, on one thread (OpenMP hand-offs dominate tiny models);
# no prompt search, sweep, method comparison, dose or steering (the same code on every device).
SMOKE_OPTIONS: dict[str, Any] = {
    "per_emotion": 6, "max_turns": 2, "share": 0.05, "control_seeds": (0,),
    "controls": ("random",), "batch_size": 8, "prompt_choice": "fixed", "sweep": False,
    "compare_methods": (), "dose_strengths": (), "steer": False, "threads": 1}
COLUMNS = ("model", "parameters", "layers x width", "recording tok/s", "full forward tok/s",
           "recording / full (>= 0.9x)", "recording / body", "run wall s", "conditions",
           "conditions/s")


def speed_row(name: str, device: str, dialogues: int, batch: int, repeats: int) -> list[str]:
    """The model's size and its recording speed against plain forwards of the same batches."""
    loaded = load(name, device=device)
    records = synthesize(max(1, dialogues // len(EMOTIONS)), seed=11, max_turns=2)
    # On a GPU the compiled kernel never runs: the torch-operator pass would repeat "record".
    speeds = measure(loaded, records, batch, repeats, passes=PASSES[:3])
    parameters = sum(p.numel() for p in loaded.model.parameters())
    row = [Path(name).name, f"{parameters / 1e6:.3g}M", f"{loaded.n_layers} x {loaded.width}",
           f"{speeds.rate('record'):.0f}", f"{speeds.rate('full forward'):.0f}",
           f"{speeds.ratio('full forward'):.2f}x", f"{speeds.ratio('decoder body'):.2f}x"]
    del loaded
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def run_row(name: str, device: str, preset: str, options: dict[str, Any],
            out: Path) -> list[str]:
    """One pipeline run, timed: its wall time, conditions and conditions per second."""
    config = preset_config(preset, model=name, device=device, **options)
    start = time.perf_counter()
    run(config, out, progress=False)
    wall = time.perf_counter() - start
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    conditions = len(grid(design_of(config)))
    spent = timings.get("ablation", 0.0) + timings.get("sweep", 0.0)
    return [f"{wall:.0f}", str(conditions), f"{conditions / spent:.2f}" if spent else "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for runs and table")
    parser.add_argument("--models", nargs="+", help="default: the four embedded models "
                        "(--smoke: smollm2-135m)")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batch", type=int, default=64, help="batch of the speed measurement")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one small model, on the CPU")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --smoke to check the script on the CPU")
    models = args.models or (["smollm2-135m"] if args.smoke else list(EMBEDDED))
    options = SMOKE_OPTIONS if args.smoke else {}
    if args.smoke:
        torch.set_num_threads(1)
    dialogues, repeats = (12, 1) if args.smoke else (384, 3)

    start = time.perf_counter()
    rows, runs = [], []
    for index, name in enumerate(models):
        run_dir = args.out / f"{index}-{Path(name).name}"
        speed = speed_row(name, device, dialogues, args.batch, repeats)
        rows.append(speed + run_row(name, device, args.preset, options, run_dir))
        runs.append(run_dir)
        print(" | ".join(rows[-1]), flush=True)
    if len(runs) > 1:
        write_comparison(runs, args.out / "compare")
    total = time.perf_counter() - start
    where = (torch.cuda.get_device_name() if device == "cuda"
             else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)")
    text = (f"\n## Size series on {where}, {dt.date.today()}\n\n"
            f"torch {torch.__version__}, {'bfloat16' if device == 'cuda' else 'float32'}, "
            f"preset {args.preset}{' (smoke sizes)' if args.smoke else ''}, seed 0; speed on "
            f"{dialogues} dialogues, batch {args.batch}, median of {repeats} repeats. "
            f"Whole script: {total / 60:.1f} min.\n"
            f"Command: `.venv/bin/python bench/gpu_size_series.py --out {args.out}"
            f"{' --smoke' if args.smoke else ''}`\n\n"
            f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}\n"
            + "".join(f"| {' | '.join(row)} |\n" for row in rows))
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-size-series.md").write_text(text)


if __name__ == "__main__":
    main()
