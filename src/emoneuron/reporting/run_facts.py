"""The generated blocks that say what a captured run was and did, besides its verdicts: its
settings, where its time went, what it evaluated, its baselines, its sets' sizes, its prompt
choice and the smallest effect it could find (the tutorial's and the README's figures).

Each is a kind of :data:`emoneuron.reporting.published.KINDS`, rendered from one captured run
(``docs/captured/NAME``, :mod:`emoneuron.reporting.captured`); where that capture lacks what a
kind needs, the block is one line saying so (:func:`~emoneuron.reporting.captured.not_captured`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.layout import ABLATION, SET_LEVEL
from emoneuron.options import flag, flat_settings
from emoneuron.reporting.captured import CAPTURED, captured_table, not_captured, summary
from emoneuron.reporting.html import pct, with_ci
from emoneuron.reporting.report import timing_rows

# The settings the tutorial explains, in its order; a setting the run's version did not have
# is left out. The model and preset lead the table.
EXPLAINED = ("per_emotion", "eval_fraction", "max_turns", "seed", "selection", "shots",
             "prompt_choice", "answer_format", "mode", "tokens", "control_seeds", "controls",
             "other_control_seeds", "dose_strengths", "proportions", "sweep", "null_sets",
             "scopes", "cross_per_emotion", "other_formats", "compare_methods",
             "method_control_seeds", "equal_size", "probe", "direction_nulls",
             "direction_scopes", "steer", "steer_strength")
KIND_NAMES = {"mask": "removed", "baseline": "unchanged model", "random": "random",
              "frequency": "frequency-matched", "least": "least selective",
              "shuffled": "shuffled-label"}


def _setting(value: Any) -> str:
    """An option's value as the command line takes it.

    >>> _setting([0.5, 1.0]), _setting(True), _setting([]), _setting(None)
    ('0.5 1.0', 'on', '(none)', '(unset)')
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "(none)"
    return "(unset)" if value is None else str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table of ``rows`` under ``header``, each cell as ``str`` gives it."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _holding(names: Sequence[str], into: Path, part: str) -> tuple[str, dict[str, Any] | None]:
    """The one run a block names and its summary, None where that lacks ``part`` (captured
    before ``capture`` kept it)."""
    (name,) = names
    run = summary(name, into)
    return name, run if part in run else None


def settings(names: Sequence[str], into: Path = CAPTURED) -> str:
    """The options the run ran with (those the tutorial explains; its preset set most of them),
    and its selection method in words."""
    name, run = _holding(names, into, "config")
    if run is None:
        return not_captured(name, "its settings")
    flat = flat_settings(run["config"])
    rows = [["model", run["model"]], ["--preset", run["preset"] or "(none)"],
            *([flag(key), _setting(flat[key])] for key in EXPLAINED if key in flat)]
    selection = run["selection"]
    return (markdown_table(["option", "value"], [[f"`{a}`" if a.startswith("--") else a, f"`{b}`"]
                                         for a, b in rows])
            + f"\nSelection: {selection['label']} at `{selection['site']}`: "
              f"{selection['description']}.\n")


def timings(names: Sequence[str], into: Path = CAPTURED) -> str:
    """Seconds per stage of the invocation that finished the run (``manifest.json``), with the
    device and threads it ran on."""
    name, run = _holding(names, into, "timings")
    if run is None:
        return not_captured(name, "its stage timings")
    seconds = run["timings"]
    total = float(seconds.get("total", sum(seconds.values())))
    return (markdown_table(["stage", "seconds"], timing_rows(seconds))
            + f"\n{total / 60:.1f} minutes in all on {run['device']} with "
              f"{run['torch_threads']} torch threads.\n")


def conditions(names: Sequence[str], into: Path = CAPTURED) -> str:
    """How many conditions the run evaluated, per method's sets and kind: the run's own sets
    first, the unchanged model last."""
    name, run = _holding(names, into, "conditions")
    if run is None:
        return not_captured(name, "its conditions")
    by_method: dict[str, dict[str, int]] = {}
    for entry in run["conditions"]:
        method = "" if entry["kind"] == "baseline" else entry["method"]
        kinds = by_method.setdefault(method, {})
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + entry["count"]
    own = f"this run's own ({run['selection']['name']})"
    order = sorted(by_method, key=lambda m: (m != "", m))
    rows = []
    for method in order:
        kinds = {k: n for k, n in by_method[method].items() if k != "baseline"}
        if kinds:
            rows.append([own if method == "" else method, sum(kinds.values()),
                         ", ".join(f"{n} {KIND_NAMES.get(k, k)}" for k, n in kinds.items())])
    baselines = by_method.get("", {}).get("baseline", 0)
    rows.append(["the unchanged model", baselines, "baseline (each answer format)"])
    rows.append(["**total**", f"**{sum(e['count'] for e in run['conditions'])}**", ""])
    return markdown_table(["sets", "conditions", "of which"], rows)


def baselines(names: Sequence[str], into: Path = CAPTURED) -> str:
    """Each emotion's held-out baseline accuracy [95% Wilson interval], whether it is near
    chance (its Wilson lower bound at or below chance), their mean weighted by n, and chance."""
    (name,) = names
    ablation = captured_table(name, ABLATION, into)
    if ablation is None:
        return not_captured(name, ABLATION)
    chance = float(summary(name, into)["evaluation"]["chance"])
    rows = ablation[ablation.condition == "baseline"].set_index("eval_emotion")
    body = [[emotion, int(row.n), with_ci((row.accuracy, row.ci_low, row.ci_high), pct),
             "near chance" if str(row.near_chance) == "True" else ""]
            for emotion, row in rows.reindex(list(EMOTIONS)).dropna(subset=["n"]).iterrows()]
    mean = float((rows.accuracy * rows.n).sum() / rows.n.sum())
    return (markdown_table(["emotion", "held-out dialogues", "baseline [95% CI]", "flag"], body)
            + f"\nMean {pct(mean)} (weighted by n), against chance {pct(chance)}.\n")


def set_sizes(names: Sequence[str], into: Path = CAPTURED) -> str:
    """Neurons in each method's set of each emotion, their mean, and the model's neurons."""
    (name,) = names
    tested = captured_table(name, SET_LEVEL, into)
    if tested is None:
        return not_captured(name, SET_LEVEL)
    own = tested[tested.statistic == "own"].drop_duplicates(["method", "masked_emotion"])
    rows = []
    for method, sets in own.groupby("method", sort=False):
        sizes = sets.set_index("masked_emotion").n_neurons.reindex(list(EMOTIONS))
        rows.append([method, *("-" if pd.isna(n) else f"{n:.0f}" for n in sizes),
                     f"{sizes.mean():.0f}"])
    run = summary(name, into)
    shape = run.get("shape")
    model = (f"\nOf the model's {shape['n_neurons']:,} neurons at `{shape['site']}` "
             f"({shape['n_layers']} layers x {shape['width']}).\n" if shape
             else "\n" + not_captured(name, "the model's shape"))
    return markdown_table(["method", *EMOTIONS, "mean"], rows) + model


def prompts(names: Sequence[str], into: Path = CAPTURED) -> str:
    """The prompt variants the run tried on identification dialogues (worst emotion's and mean
    accuracy) and the one it chose, or that its prompt was fixed."""
    name, run = _holding(names, into, "evaluation")
    if run is None:
        return not_captured(name, "its prompt choice")
    choice = run["evaluation"]["prompt_choice"]
    if not choice.get("variants"):
        return ("The prompt was fixed (`--prompt-choice fixed`): "
                f"{run['evaluation']['description']}.\n")
    rows = [[v["style"], "yes" if v["calibrate"] else "no",
             f"{pct(v['worst'])} ({v['worst_emotion']})", pct(v["mean"])]
            for v in choice["variants"]]
    chosen = f"{choice['style']}{', calibrated' if choice['calibrate'] else ''}"
    return (markdown_table(["prompt", "calibrated", "worst emotion", "mean"], rows)
            + f"\nChosen: {chosen} ({choice['rule']}, up to {choice['per_emotion']} dialogues "
              f"per emotion): {run['evaluation']['description']}.\n")


def power(names: Sequence[str], into: Path = CAPTURED) -> str:
    """The smallest own-emotion excess over random sets each method's test finds with 80%
    power (every position), with the dialogues and random sets it had."""
    (name,) = names
    tested = captured_table(name, SET_LEVEL, into)
    if tested is None:
        return not_captured(name, SET_LEVEL)
    own = tested[(tested.statistic == "own") & (tested.scope == "all")]
    parts = [f"{method} {_span(100 * rows.min_detectable_excess)} points"
             for method, rows in own.groupby("method", sort=False)]
    return (f"With {_span(own.n_dialogues)} held-out dialogues per emotion and "
            f"{_span(own.k_random_sets)} random sets per set, the smallest own-emotion excess "
            f"found with 80% power (removed at every position) is {', '.join(parts)}.\n")


def _span(values: Any) -> str:
    """The range of ``values`` as whole numbers: one number when they agree."""
    low, high = round(float(min(values))), round(float(max(values)))
    return f"{low}" if low == high else f"{low}-{high}"
