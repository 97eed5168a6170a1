"""``emoneuron ablate``: any neurons.json evaluated in a finished run's context and added to
its method comparison (``methods.csv``, ``methods/NAME/``), as the run's own methods were
(:mod:`emoneuron.causal.experiments.method_comparison`): the run's evaluation split, few-shot
examples, classifier, intervention and random control seeds, its model loaded again."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from emoneuron.app.reuse import store_context
from emoneuron.app.run import update_methods_table
from emoneuron.causal.conditions.grid import Condition, grid
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.execution import Sources, execute
from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.experiments.method_comparison import RUN_METHOD, Compared, comparison_rows
from emoneuron.causal.inference.tables import ablation_tables
from emoneuron.errors import UserError
from emoneuron.io import read_json, write_csv
from emoneuron.layout import (
    CONDITIONS,
    FIGURES,
    LOCK,
    MANIFEST,
    METHODS,
    METHODS_TABLE,
    NEURONS,
    REPORT,
    method_dir,
    method_file,
)
from emoneuron.models.loading import load
from emoneuron.options import flat_settings
from emoneuron.reporting.report import write_report
from emoneuron.rundir import RunDir
from emoneuron.selection.neurons import NeuronSets


def ablate(directory: str | Path, neurons: str | Path, name: str | None = None,
           progress: bool = True) -> tuple[Path, Path | None]:
    """``emoneuron ablate``: evaluate the neurons in the file ``neurons`` in the context of the
    finished run in ``directory`` (:func:`evaluate_sets`, under ``name``, by default the file's
    stem), then rewrite the run's report where it has one. Returns the paths of
    ``methods.csv`` and of the report (None where the run has none)."""
    sets = NeuronSets.load(neurons)
    table = evaluate_sets(directory, sets, name or Path(neurons).stem, progress, source=neurons)
    return table, write_report(directory) if RunDir(directory).exists(REPORT) else None


def evaluate_sets(directory: str | Path, sets: NeuronSets, name: str,
                  progress: bool = True, source: str | Path = "the neurons") -> Path:
    """Evaluate ``sets`` (read from the file ``source``, named in errors) in the context of the
    finished run in ``directory``: its evaluation split, few-shot examples, classifier,
    intervention and random control seeds. Writes ``methods/NAME/`` there (neurons.json, a
    resumable conditions.jsonl, ablation.csv, effects.csv, specificity.csv, confusion.csv),
    updates methods.csv, lists them in the manifest and returns methods.csv's path. The name,
    the sets and every file it reads are checked before the model loads or anything is
    written."""
    run_dir = RunDir(directory)
    manifest = run_dir.manifest()
    config, evaluation_setup = flat_settings(manifest["config"]), manifest["evaluation"]
    name = _checked_name(name)
    run_dir.check_fits(sets, source)
    _check_free(run_dir, name, sets)
    # Also the report's files, which `emoneuron ablate` rewrites after.
    run_dir.check_writable("ablate", [METHODS_TABLE, MANIFEST, LOCK, REPORT],
                           [METHODS, method_dir(name), FIGURES])
    evaluation = run_dir.records("eval")
    fewshot = run_dir.records("fewshot")
    sources = Sources(run_dir.recording().stats())
    baseline = _stored_baseline(run_dir)
    if run_dir.exists(METHODS_TABLE):
        run_dir.check(METHODS_TABLE)
    loaded = load(config["model"], device=config["device"], progress=progress)
    shots = order_shots(fewshot, config["seed"], config["shots"])
    classifier = Classifier(loaded, shots, config["batch_size"],
                            evaluation_setup.get("calibrate", config["calibrate"]),
                            evaluation_setup.get("style", config["prompt"]),
                            evaluation_setup.get("answer_format", "label"), config["seed"])
    seeds = tuple(config["control_seeds"])
    design = Design(control_seeds=seeds, controls=("random",), proportions=(), dose_strengths=(),
                    mode=config["mode"],
                    strength=config["strength"], tokens=config["tokens"])
    conditions = [c if c.kind == "baseline" else replace(c, method=name) for c in grid(design)]
    with run_dir.locked("ablate"):  # not while a run (or another ablate) writes it
        sets.save(run_dir.file(method_file(name, NEURONS)))
        # The run's own context: the few-shot examples included, so predictions made with
        # other examples (a run redone over a damaged manifest) are refused, not resumed.
        store = ConditionStore(run_dir.file(method_file(name, CONDITIONS)),
                               store_context(evaluation, sets, config["model"], classifier))
        if baseline is not None and Condition("baseline").key not in store.done:
            store.add(Condition("baseline"), Ablation.of({}), np.array(baseline["predictions"]))
        execute(classifier, sets, sources, evaluation, conditions, store, progress)
        for table_name, table in ablation_tables(store, evaluation, conditions).items():
            write_csv(run_dir.file(method_file(name, f"{table_name}.csv")), table)
        label = f"{name} ({sets.config.statistic}, {sets.config.rule})"
        compared = Compared(name, label, sets, name, sources)
        comparison_seeds = seeds[:config.get("method_control_seeds", 1)]
        rows = comparison_rows(store, evaluation, conditions, compared, comparison_seeds)
        path = update_methods_table(run_dir, rows)
        run_dir.add_files([METHODS_TABLE, *run_dir.under(method_dir(name))])
    return path


def _checked_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"method name {name!r}: use letters, digits, '.', '_' or '-', "
                        "e.g. --name my-method")
    return name


def _check_free(run_dir: RunDir, name: str, sets: NeuronSets) -> None:
    """Refuse a method name whose results ablate would replace: the run's own selection
    (``run`` or its name), a method the run compared, or an earlier ablate's other neurons (or a
    file) under ``methods/``. The same neurons under their earlier name resume that ablate."""
    manifest = run_dir.manifest()
    own = {RUN_METHOD, manifest.get("selection", {}).get("name"),
           *flat_settings(manifest.get("config", {})).get("compare_methods", ())}
    if name in own:
        raise UserError(f"--name {name}: a method of the run in {run_dir.path} (its results in "
                        f"{METHODS_TABLE} would be replaced); choose another --name")
    folder = run_dir.file(method_dir(name))
    if not folder.exists():
        return
    try:
        earlier = read_json(run_dir.file(method_file(name, NEURONS)))
    except (OSError, ValueError):
        earlier = None
    if earlier != json.loads(json.dumps(sets.to_json())):
        raise UserError(f"--name {name}: {folder} holds other results (an earlier ablate's, or "
                        "a file); choose another --name, or give the same neurons file to "
                        "resume that ablate")


def _stored_baseline(run_dir: RunDir) -> dict[str, Any] | None:
    """The main run's stored baseline entry, to be reused rather than evaluated again."""
    if not run_dir.exists(CONDITIONS):
        return None
    run_dir.check(CONDITIONS)
    return ConditionStore.entries(run_dir.file(CONDITIONS)).get(Condition("baseline").key)
