"""Selection methods compared by what their neurons cause, on one held-out split.

For each method (a :class:`~emoneuron.selection.identify.NeuronSets`: one neuron set per emotion)
and each emotion ``e``, three conditions enter: the baseline ``B``, ``e``'s set zeroed (``M_e``,
evaluated on all six emotions) and random layer-matched controls of ``e``'s set (``C_e``, the mean
over the control seeds, evaluated on ``e``). The **specific excess drop** is

    SED_e = (own drop) - (control's own drop) - (mean drop on the five other emotions)
          = mean_{d in e}(C_e - M_e) - 1/5 sum_{f != e} mean_{d in f}(B - M_e),

large only when removing the set hurts its own emotion more than random neurons do and more than
it hurts the others. Its 95% interval is a normal interval over per-dialogue paired differences,
stratified by evaluation emotion: SED is a sum of per-emotion means of per-dialogue terms, the
strata hold different dialogues, so its variance is the sum of each stratum's sample variance
over its size (:func:`emoneuron.causal.inference.significance.stratified_interval`). The mean over
the six emotions is again such a sum, with every dialogue's terms pooled, so its interval accounts
for the masks sharing dialogues.

``methods.csv`` holds one row per method and emotion and one (``masked_emotion`` = ``mean``)
per method, methods ranked by the mean; ``near_chance`` marks an emotion whose baseline cannot
show a drop (:func:`emoneuron.causal.inference.significance.near_chance`). ``emoneuron run
--compare-methods`` fills it for the registered methods
(:data:`emoneuron.selection.identify.SELECTION_METHODS`) from the run's own recordings; ``emoneuron
ablate`` (:func:`evaluate_sets`) adds any neurons.json in a finished run's context.

Each method's sets are removed at the site they were found at; in mode ``mean`` the values
come from the recording at that site (:attr:`Compared.sources`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.causal.conditions.grid import Condition, grid
from emoneuron.causal.conditions.store import ConditionStore, correctness
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.execution import EvaluationSetup, Sources, execute
from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.inference.significance import Interval, near_chance, stratified_interval
from emoneuron.causal.inference.summaries import MEAN_ROW
from emoneuron.causal.inference.tables import ablation_tables
from emoneuron.data.schema import EMOTIONS, Record, records_hash
from emoneuron.errors import UserError
from emoneuron.executors import Executor
from emoneuron.io import read_json, sha256_bytes, write_csv
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
from emoneuron.rundir import RunDir
from emoneuron.selection.identify import NeuronSets, SelectionMethod, selection_method

RUN_METHOD = "run"  # the run's own sets, when no compared method equals them


def selection_methods(names: Sequence[str]) -> list[SelectionMethod]:
    """The registered methods called ``names`` (a UserError names an unknown one)."""
    return [selection_method(name) for name in names]


@dataclass(frozen=True)
class Compared:
    """One method's sets, the ``Condition.method`` tag of their conditions ("" when they
    are the run's own sets, whose conditions the main grid already holds) and what their
    controls and mean-mode values are drawn from (statistics at the sets' site)."""

    name: str
    label: str
    sets: NeuronSets
    tag: str
    sources: Sources


def method_conditions(design: Design, tag: str, seeds: Sequence[int]) -> list[Condition]:
    """What the comparison needs beyond the baseline: each emotion's mask on all six emotions
    and its random controls (``seeds``) on the masked emotion."""
    conditions = []
    for emotion in EMOTIONS:
        mask = Condition("mask", emotion, mode=design.mode, strength=design.strength,
                         tokens=design.tokens, method=tag)
        conditions += [mask, *(replace(mask, kind="control", control="random", seed=seed,
                                       eval_emotions=(emotion,)) for seed in seeds)]
    return conditions


def _main_of(conditions: Sequence[Condition], tag: str, emotion: str,
             seeds: Sequence[int]) -> tuple[Condition, list[Condition]]:
    """The all-neurons mask of ``emotion`` and its random controls of ``seeds``."""
    masks = [c for c in conditions if c.kind == "mask" and c.method == tag
             and c.masked_emotion == emotion and (c.layer_range, c.proportion) == ("all", 1.0)
             and c.eval_emotions == EMOTIONS]
    mask = masks[0]
    controls = [c for c in conditions if c.kind == "control" and c.control == "random"
                and c.method == tag and c.masked_emotion == emotion and c.seed in seeds
                and (c.layer_range, c.proportion, c.mode, c.strength) == (
                    "all", 1.0, mask.mode, mask.strength)]
    return mask, controls


def _by_emotion(store: ConditionStore, condition: Condition,
                evaluation: Sequence[Record]) -> dict[str, np.ndarray]:
    frame = correctness(store.done[condition.key], evaluation)
    return {e: frame.correct[frame.eval_emotion == e].to_numpy()
            for e in condition.eval_emotions}


def comparison_rows(store: ConditionStore, evaluation: Sequence[Record],
                    conditions: Sequence[Condition], compared: Compared,
                    seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One method's rows of ``methods.csv``: each emotion's, then their mean."""
    baseline = _by_emotion(store, Condition("baseline"), evaluation)
    terms: dict[str, list[np.ndarray]] = {}  # per masked emotion: per-dialogue terms per stratum
    rows = []
    for emotion in EMOTIONS:
        mask, controls = _main_of(conditions, compared.tag, emotion, seeds)
        masked = _by_emotion(store, mask, evaluation)
        control = np.mean([_by_emotion(store, c, evaluation)[emotion] for c in controls], axis=0)
        others = [e for e in EMOTIONS if e != emotion]
        terms[emotion] = [control - masked[emotion] if e == emotion
                          else -(baseline[e] - masked[e]) / len(others) for e in EMOTIONS]
        rows.append(_row(compared, emotion, stratified_interval(terms[emotion]),
                         near_chance(baseline[emotion]),
                         own=float(np.mean(baseline[emotion] - masked[emotion])),
                         control=float(np.mean(baseline[emotion] - control)),
                         cross=float(np.mean([np.mean(baseline[e] - masked[e]) for e in others])),
                         size=len(compared.sets.emotions[emotion]), n_seeds=len(controls)))
    pooled = [np.mean([terms[m][s] for m in EMOTIONS], axis=0) for s in range(len(EMOTIONS))]
    mean = _row(compared, MEAN_ROW, stratified_interval(pooled), False,
                **{key: float(np.mean([row[column] for row in rows])) for key, column in (
                    ("own", "own_drop"), ("control", "control_drop"),
                    ("cross", "cross_drop"), ("size", "n_neurons"))},
                n_seeds=len(seeds))
    return [mean, *rows]


def _row(compared: Compared, emotion: str, excess: Interval, is_near_chance: bool, own: float,
         control: float, cross: float, size: float, n_seeds: int) -> dict[str, Any]:
    config = compared.sets.config
    return {"method": compared.name, "label": compared.label, "site": compared.sets.site,
            "statistic": config.statistic, "rule": config.rule, "run_method": compared.tag == "",
            "masked_emotion": emotion, "n_neurons": size, "own_drop": own,
            "control_drop": control, "cross_drop": cross, "specific_excess_drop": excess.estimate,
            "ci_low": excess.low, "ci_high": excess.high, "n_control_seeds": n_seeds,
            "near_chance": is_near_chance}


def update_methods_table(run_dir: RunDir, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Put ``rows`` into the run's methods.csv in place of their methods' earlier rows, and
    rank every method there by its mean specific excess drop (1 = largest)."""
    path = run_dir.file(METHODS_TABLE)
    table = pd.DataFrame(list(rows))
    earlier = run_dir.read_csv(METHODS_TABLE, optional=True)
    if earlier is not None:
        earlier = earlier.drop(columns="rank")
        table = pd.concat([earlier[~earlier.method.isin(table.method)], table],
                          ignore_index=True)
    means = table[table.masked_emotion == MEAN_ROW].set_index("method").specific_excess_drop
    rank = means.astype(float).rank(ascending=False, method="first").astype(int)
    table.insert(0, "rank", table.method.map(rank))
    order = {e: k for k, e in enumerate([MEAN_ROW, *EMOTIONS])}
    table = table.sort_values(["rank", "masked_emotion"], key=lambda column: (
        column.map(order) if column.name == "masked_emotion" else column), ignore_index=True)
    write_csv(path, table)
    return path


def compare_in_run(classifier: Classifier, evaluation: Sequence[Record],
                   store: ConditionStore, compared: Sequence[Compared],
                   main_conditions: Sequence[Condition], design: Design, seeds: Sequence[int],
                   progress: bool = True, executor: Executor | None = None,
                   setup: EvaluationSetup | None = None) -> list[dict[str, Any]]:
    """Evaluate what the comparison still needs of each method (the run's own sets reuse the
    main grid's conditions) and return the methods' rows of ``methods.csv``."""
    rows = []
    for method in compared:
        conditions = (list(main_conditions) if method.tag == ""
                      else method_conditions(design, method.tag, seeds))
        execute(classifier, method.sets, method.sources, evaluation, conditions, store,
                progress, executor, setup)
        rows += comparison_rows(store, evaluation, conditions, method, seeds)
    return rows


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
        context = {"eval": records_hash(evaluation), "neurons": sets.to_json(),
                   "model": config["model"], "prompt": classifier.description}
        store = ConditionStore(run_dir.file(method_file(name, CONDITIONS)),
                               sha256_bytes(json.dumps(context, sort_keys=True).encode()))
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
