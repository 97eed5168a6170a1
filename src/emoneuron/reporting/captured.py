"""The runs the published documents cite, captured into ``docs/captured/NAME`` (:func:`capture`),
and the readers that :mod:`emoneuron.reporting.published`'s generated blocks render from.

A captured run is a few of its small tables under their run file names (:data:`TABLES`) and
``run.json``: the parts of its manifest the documents cite (model, settings, selection, prompt
choice, stage timings) and how many conditions of each kind it evaluated. A document must never
cite what its run does not hold: a kind that needs a part an older capture lacks renders the
one line of :func:`not_captured` instead of a figure.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from emoneuron.errors import UserError
from emoneuron.io import write_json
from emoneuron.layout import ABLATION, CONDITIONS, FORMATS_SET_LEVEL, SET_LEVEL, SWEEP_SET_LEVEL
from emoneuron.rundir import RunDir

CAPTURED = Path("docs/captured")
SUMMARY = "run.json"
# The set-level tables and the baseline rows' table (ablation.csv: every accuracy with its
# Wilson interval and near-chance flag), each a few kilobytes.
TABLES = (SET_LEVEL, FORMATS_SET_LEVEL, SWEEP_SET_LEVEL, ABLATION)


def capture(name: str, run: Path, into: Path = CAPTURED) -> Path:
    """Copy ``run``'s small tables and its manifest's summary to ``into/name`` (replacing what
    was there) and return that folder."""
    run_dir = RunDir(run)
    manifest = run_dir.manifest()
    config = manifest["config"]
    model = manifest["model"]
    summary = {"model": model["name"], "preset": config.get("preset", ""),
               "seed": config.get("seed", 0), "counts": manifest["data"]["counts"],
               "emoneuron_version": manifest["emoneuron_version"],
               "shape": {key: model[key] for key in ("n_layers", "width", "n_neurons", "site")},
               "device": model.get("device", config.get("device")),
               "torch_threads": manifest["machine"]["torch_threads"],
               "config": config, "selection": manifest["selection"],
               "evaluation": {key: manifest["evaluation"][key]
                              for key in ("description", "chance", "prompt_choice")},
               "timings": manifest["timings"], "conditions": condition_counts(run_dir)}
    target = into / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for table in TABLES:
        if run_dir.exists(table):
            shutil.copyfile(run_dir.file(table), target / table)
    write_json(target / SUMMARY, summary)
    return target


def condition_counts(run_dir: RunDir) -> list[dict[str, Any]]:
    """How many conditions of each kind the run evaluated (``conditions.jsonl``: one line per
    condition, each one pass of the model over its dialogues), per method ("" = the run's own
    sets) and kind (baseline, mask, or the control set's name)."""
    if not run_dir.exists(CONDITIONS):
        return []
    run_dir.check(CONDITIONS)
    found: Counter[tuple[str, str]] = Counter()
    for line in run_dir.file(CONDITIONS).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        found[(entry.get("method", ""), entry["control"] or entry["kind"])] += 1
    return [{"method": method, "kind": kind, "count": n} for (method, kind), n in found.items()]


def captured_table(name: str, file: str, into: Path = CAPTURED) -> pd.DataFrame | None:
    """The captured run's copy of the run file ``file``; None when it was not captured."""
    path = into / name / file
    return pd.read_csv(path) if path.exists() else None


def set_level(name: str, into: Path = CAPTURED) -> pd.DataFrame:
    """The captured run's set-level table; every kind built on it refuses a run without one,
    since a block that left it out would cite a run it does not show."""
    found = captured_table(name, SET_LEVEL, into)
    if found is None:
        raise UserError(f"{into / name}: no {SET_LEVEL} (a run from before the set-level test); "
                        f"capture a newer run with make docs-results RESULTS={name}=RUN_DIR, or "
                        f"leave {name} out of the block")
    return found


def summary(name: str, into: Path = CAPTURED) -> dict[str, Any]:
    """The captured run's ``run.json``."""
    path = into / name / SUMMARY
    if not path.exists():
        raise UserError(f"{path}: no captured run {name!r}; run make docs-results with "
                        f"--run {name}=RUN_DIR")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def not_captured(name: str, what: str) -> str:
    """The one line a block holds where its captured run lacks ``what`` (captured before
    ``capture`` kept it): the figure is left out, never made up.

    >>> not_captured("demo", "ablation.csv")[:45]
    '*Not in the captured run demo (ablation.csv):'
    """
    return (f"*Not in the captured run {name} ({what}): capture it again with make "
            f"docs-results RESULTS={name}=RUN_DIR.*\n")
