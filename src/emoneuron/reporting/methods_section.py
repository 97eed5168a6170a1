"""The report's method comparison (``methods.csv``) and its statement of what ran: the preset
with the smallest effect it could detect, and how the prompt was chosen.

Kept apart from :mod:`emoneuron.reporting.report` (which lays out the page); figures go through the
page's renderer, passed in as ``render``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emoneuron.causal.inference.significance import min_detectable_drop
from emoneuron.causal.inference.summaries import MEAN_ROW
from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.causal_section import titled
from emoneuron.reporting.figures import subplots
from emoneuron.reporting.html import table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Render = Callable[[str, str, str, Callable[[], "Figure"]], str]

def run_statement(manifest: dict[str, Any], baseline: float) -> str:
    """What ran: preset, evaluation size, the drop it can detect, and the prompt choice."""
    held_out = min(manifest["data"]["counts"]["eval"].values())
    smallest = 100 * min_detectable_drop(held_out, baseline)
    detectable = f"{smallest:.0f} points" if math.isfinite(smallest) else "any size"
    preset = manifest["config"].get("preset", "")
    size = (f"Quick demo: too small to detect effects below {detectable}"
            if preset == "demo" else "Study-size run" if preset == "study" else "Custom run")
    text = (f"{size} ({held_out} held-out dialogues per emotion; a drop of {detectable} "
            f"is detected with 80% power at a baseline of {100 * baseline:.0f}%, McNemar's "
            "exact test at the Holm family's 0.05/6, in the best case of losses only).")
    choice = manifest["evaluation"].get("prompt_choice", {})
    if choice.get("variants"):
        tried = "; ".join(f"{v['style']}{', calibrated' if v['calibrate'] else ''}: worst "
                          f"{100 * v['worst']:.0f}% ({v['worst_emotion']}), mean "
                          f"{100 * v['mean']:.0f}%" for v in choice["variants"])
        text += (f" Prompt: {choice['style']}{', calibrated' if choice['calibrate'] else ''}, "
                 f"the variant whose worst emotion scored best on up to {choice['per_emotion']} "
                 f"identification dialogues per emotion ({tried}).")
    return f"<p>{escape(text)}</p>"


def _fig_methods(methods: pd.DataFrame) -> Figure:
    per_emotion = methods[methods.masked_emotion != MEAN_ROW]
    names = list(dict.fromkeys(methods.method))
    fig, ax = subplots(figsize=(9, 3.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        rows = per_emotion[per_emotion.method == name].set_index("masked_emotion").reindex(
            list(EMOTIONS))
        x = np.arange(len(EMOTIONS)) + (k - (len(names) - 1) / 2) * width
        value = 100 * rows.specific_excess_drop.to_numpy(dtype=float)
        error = [value - 100 * rows.ci_low.to_numpy(dtype=float),
                 100 * rows.ci_high.to_numpy(dtype=float) - value]
        ax.bar(x, value, width, yerr=error, capsize=2, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    marked = set(per_emotion.masked_emotion[per_emotion.near_chance.astype(str) == "True"])
    ax.set_xticks(np.arange(len(EMOTIONS)),
                  [titled(e, marked).replace(" (", "\n(") for e in EMOTIONS])
    ax.set_ylabel("specific excess drop (points)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def _points(row: Any, column: str) -> str:
    return f"{100 * float(row[column]):+.1f}"


def _ranking_sentence(means: pd.DataFrame) -> str:
    """Which method's sets matter most, and by how much more than the run's own selection."""
    best = means.iloc[0]
    own = means[means.run_method.astype(bool)]
    sentence = (f"{best['method']}'s sets matter most: mean specific excess drop "
                f"{_points(best, 'specific_excess_drop')} points [{_points(best, 'ci_low')}, "
                f"{_points(best, 'ci_high')}]")
    if not own.empty and own.iloc[0]["method"] != best["method"]:
        gap = 100 * (float(best.specific_excess_drop) - float(own.iloc[0].specific_excess_drop))
        sentence += (f", {gap:.1f} points more than this run's own selection "
                     f"({own.iloc[0]['method']}, {_points(own.iloc[0], 'specific_excess_drop')} "
                     f"[{_points(own.iloc[0], 'ci_low')}, {_points(own.iloc[0], 'ci_high')}])")
    elif not own.empty:
        sentence += ", and they are this run's own selection"
    return sentence


def set_sizes_sentence(methods: pd.DataFrame) -> str:
    """How large each method's sets are (mean and range over the emotions): a method that
    removes more neurons can cause a larger drop for that reason alone.

    >>> rows = pd.DataFrame({"method": ["lape"] * 3 + ["auroc"] * 3,
    ...                      "masked_emotion": ["mean", "anger", "fear"] * 2,
    ...                      "n_neurons": [150.0, 100, 200, 75.0, 70, 80]})
    >>> set_sizes_sentence(rows)[:63]
    'Set sizes differ: lape 150 neurons per emotion (100-200), auroc'
    """
    per_emotion = methods[methods.masked_emotion != MEAN_ROW]
    parts: list[str] = []
    for method in dict.fromkeys(methods.method):
        sizes = per_emotion.n_neurons[per_emotion.method == method].astype(float)
        parts.append(f"{method} {sizes.mean():.0f}" + (" neurons per emotion" if not parts
                                                        else "")
                     + f" ({sizes.min():.0f}-{sizes.max():.0f})")
    if len({round(float(n)) for n in per_emotion.n_neurons}) <= 1:
        return f"Every set has {per_emotion.n_neurons.iloc[0]:.0f} neurons."
    return (f"Set sizes differ: {', '.join(parts)}; a larger set can remove more for its size "
            "alone.")


def methods_summary(methods: pd.DataFrame | None) -> str:
    """The summary's line on the method comparison (empty when the run compared none)."""
    if methods is None:
        return ""
    means = methods[methods.masked_emotion == MEAN_ROW].sort_values("rank")
    return (f"<p>Selection methods compared by what their neurons cause: "
            f"{escape(_ranking_sentence(means))} (see "
            '<a href="#methods">which selection finds neurons that matter</a>).</p>')


def methods_html(methods: pd.DataFrame | None, render: Render) -> str:
    """The ranked method table, the sentence naming the winner, and the per-emotion figure;
    a note when the run compared no methods."""
    if methods is None:
        return ('<p class="note">No method comparison in this run (--compare-methods was '
                "empty).</p>")
    means = methods[methods.masked_emotion == MEAN_ROW].sort_values("rank")
    rows = [[int(r["rank"]), r["method"], r["label"] + (" (this run's)" if r["run_method"] else ""),
             f"{float(r['n_neurons']):.0f}", _points(r, "own_drop"), _points(r, "control_drop"),
             _points(r, "cross_drop"),
             f"{_points(r, 'specific_excess_drop')} [{_points(r, 'ci_low')}, "
             f"{_points(r, 'ci_high')}]"] for _, r in means.iterrows()]
    sentence = _ranking_sentence(means)
    figure = render("methods", "Specific excess drop per emotion and method",
                    "Own-emotion drop minus the random layer-matched control's drop minus the "
                    "mean drop on the other five emotions, in points, for each method's set of "
                    "each emotion; bars: normal 95% intervals from the per-dialogue paired "
                    "differences, stratified by evaluated emotion.",
                    partial(_fig_methods, methods))
    per_emotion = methods[methods.masked_emotion != MEAN_ROW].set_index(
        ["method", "masked_emotion"])
    marked = set(methods.masked_emotion[methods.near_chance.astype(str) == "True"])
    emotion_rows = [[m, *(f"{_points(per_emotion.loc[(m, e)], 'specific_excess_drop')} "
                          f"[{_points(per_emotion.loc[(m, e)], 'ci_low')}, "
                          f"{_points(per_emotion.loc[(m, e)], 'ci_high')}]" for e in EMOTIONS)]
                    for m in means.method]
    return (table(["rank", "method", "selection", "neurons per emotion", "own drop",
                   "control drop", "cross drop", "specific excess drop [95% CI]"], rows)
            + f"<p>{escape(sentence)}. Points, means over the six emotions. "
            f"{escape(set_sizes_sentence(methods))}</p>"
            + table(["method", *(titled(e, marked) for e in EMOTIONS)], emotion_rows)
            + "<p class=\"note\">Specific excess drop per emotion [95% CI], points; an interval "
            "above 0 means the set's removal hurts its own emotion more than random neurons' "
            "and more than it hurts the others. Emotions marked near chance cannot show a "
            "drop.</p>" + figure)
