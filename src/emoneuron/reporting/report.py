"""The report a researcher opens after a run: summary, figures, tables and run details.

:func:`write_report` reads the stage outputs in a run directory and writes a self-contained
``report.html`` (figures embedded as base64 PNG, inline CSS, nothing fetched from outside) and
every figure as ``figures/<name>.png`` and ``figures/<name>.svg``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from emoneuron.causal.config import LAYER_RANGES, in_range
from emoneuron.data.schema import EMOTIONS
from emoneuron.io import atomic_open
from emoneuron.layout import (
    CARDS_INDEX,
    CONFUSION,
    DIRECTIONS_DESCRIPTION,
    DIRECTIONS_SET_LEVEL,
    DOSE,
    FIGURES,
    FORMATS_SET_LEVEL,
    METHODS_TABLE,
    PROBE_DESCRIPTION,
    REPORT,
    SET_LEVEL,
    SPECIFICITY,
    STABILITY,
    STEERING,
    STEERING_JUDGES,
    STEERING_JUDGES_DESCRIPTION,
    SWEEP_SET_LEVEL,
    UNITS,
)
from emoneuron.options import flat_settings
from emoneuron.reporting.causal_section import (
    confusion_figure,
    controls_table,
    dose_figures,
    near_chance_emotions,
    steering_html,
    titled,
)
from emoneuron.reporting.directions_section import directions_html
from emoneuron.reporting.figures import hover, panels, subplots
from emoneuron.reporting.html import (
    Section,
    count,
    page,
    pct,
    pp,
    remove_figure,
    render_figure,
    table,
    ul,
    with_ci,
)
from emoneuron.reporting.methods_section import methods_html, methods_summary, run_statement
from emoneuron.reporting.results import (
    RunResults,
    SelfEffect,
    baseline_accuracy,
    layer_counts,
    load_results,
    self_effects,
    sweep_self,
)
from emoneuron.reporting.setlevel_section import (
    effect_sweep_html,
    formats_html,
    set_level_html,
    set_level_summary,
)
from emoneuron.reporting.steering_section import judged_steering_html
from emoneuron.reporting.units_section import units_html
from emoneuron.rundir import RunDir

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

SWEEP_FIGURES = ("sweep_heatmaps", "sweep_dose_response")


def _thirds(n_layers: int) -> list[list[int]]:
    """The layers of the bottom, middle and top third (one may be empty below 3 layers)."""
    return [[x for x in range(n_layers) if in_range(x, n_layers, third)]
            for third in LAYER_RANGES[:3]]


def _span(layers: list[int]) -> str:
    return f"{layers[0]}-{layers[-1]}" if layers else "none"


def existence_summary(neurons: dict[str, Any], manifest: dict[str, Any],
                      stability: dict[str, Any] | None) -> str:
    """The summary's answer to "do emotion neurons exist?": the evidence first (each set's size
    against what the same rule finds on shuffled labels, and how much of it a resample of the
    identification dialogues finds again: ``stability.json``), then the counts, which the
    selection rule sets by construction and so are no evidence by themselves."""
    heading = "<h3>(a) Do emotion neurons exist?</h3>"
    if stability is None:
        evidence = ("No stability test in this run (stability.json is missing): nothing here "
                    "shows that these sets are more than the rule would find in noise.")
        items: list[str] = []
    else:
        evidence = (f"Evidence: on {stability.get('permutations', 0)} shuffled-label "
                    "selections the same rule, without its size cut, finds the counts in "
                    f"brackets where the real labels give the first; on "
                    f"{stability.get('resamples', 0)} bootstrap resamples of the identification "
                    "dialogues, a resample's set shares the Jaccard fraction given with the "
                    "full set (1 = the same neurons).")
        items = [_existence_line(emotion, stability["emotions"].get(emotion, {}))
                 for emotion in EMOTIONS]
    return (heading + f"<p>{escape(evidence)}</p>" + (ul(items) if items else "")
            + f"<p>{escape(_counts_by_construction(neurons, manifest))}</p>")


def _existence_line(emotion: str, entry: dict[str, Any]) -> str:
    null, boot = entry.get("null_count"), entry.get("bootstrap_jaccard_to_full")
    shuffled = (f"shuffled labels {null['mean']:.1f} (max {null['max']})" if null
                else "no shuffled-label count")
    stable = (f"bootstrap Jaccard {boot['mean']:.2f} [{boot['p05']:.2f}, {boot['p95']:.2f}]"
              if boot else "no bootstrap")
    return f"{emotion}: {entry.get('count', '-')} neurons ({shuffled}); {stable}."


def _counts_by_construction(neurons: dict[str, Any], manifest: dict[str, Any]) -> str:
    model = manifest["model"]
    per = ", ".join(f"{e} {len(neurons['emotions'].get(e, []))}" for e in EMOTIONS)
    uses = Counter((n["layer"], n["index"]) for ns in neurons["emotions"].values() for n in ns)
    total = int(model["n_neurons"])
    method = manifest.get("selection", {}).get("label", neurons["statistic"])
    text = (f"Counts, set by the rule (rule {neurons['rule']}: its size cut keeps a fixed share "
            f"or number of neurons by construction, so a count alone is no evidence): selected "
            f"by {method} at site {neurons['site']}: {per}. In total {len(uses)} distinct "
            f"neurons, {pct(len(uses) / total, 2)} of the {total:,} neurons "
            f"({model['n_layers']} layers x {model['width']}).")
    shared = sum(1 for k in uses.values() if k > 1)
    if shared:
        text += f" {count(shared, 'of them is', 'of them are')} selected for several emotions."
    return text


def _summary_where(counts: npt.NDArray[np.int_]) -> str:
    n_layers = counts.shape[1]
    third = np.arange(n_layers) * 3 // n_layers
    bottom, middle, top = (_span(layers) for layers in _thirds(n_layers))
    intro = (f"Layers counted from 0 (input side) and split into thirds: bottom {bottom}, "
             f"middle {middle}, top {top}.")
    items = []
    for emotion, row in zip(EMOTIONS, counts, strict=True):
        if row.sum() == 0:
            items.append(f"{emotion}: no neurons selected.")
            continue
        shares = " / ".join(pct(row[third == t].sum() / row.sum(), 0) for t in range(3))
        peak = int(np.argmax(row))
        items.append(f"{emotion}: peak at layer {peak} ({count(row[peak], 'neuron')}); "
                     f"bottom / middle / top third: {shares}.")
    return f"<h3>(b) Where are they?</h3><p>{escape(intro)}</p>{ul(items)}"


def _summary_effects(effects: list[SelfEffect], chance: float, description: str,
                     set_level: str, near_chance: set[str]) -> str:
    if not effects:
        return '<h3>(c) What happens when they are removed?</h3><p class="note">No results.</p>'
    n_total = sum(e.n for e in effects)
    mean = sum(e.baseline[0] * e.n for e in effects) / n_total
    low, high = min(effects, key=lambda e: e.baseline[0]), max(effects, key=lambda e: e.baseline[0])
    text = (f"Baseline accuracy ({description}) ranges from {pct(low.baseline[0])} "
            f"({low.emotion}) to {pct(high.baseline[0])} ({high.emotion}), {pct(mean)} "
            f"weighted by n, against chance {pct(chance)}.")
    parts = [f"<p>{escape(text)}</p>"]
    # The rule of every near-chance mark (effects.csv's near_chance): the baseline's 95% Wilson
    # lower bound at or below chance.
    near = [e for e in effects if e.emotion in near_chance]
    if near:
        names = ", ".join(f"{e.emotion} ({pct(e.baseline[0])})" for e in near)
        text = (f"Warning: baseline accuracy is near chance for {names} (its 95% Wilson interval "
                "reaches chance); drops for these emotions cannot be interpreted, the model "
                "barely recognises them to begin with.")
        parts.append(f'<p class="warn">{escape(text)}</p>')
    parts.append(ul([
        f"{e.emotion}: {pct(e.baseline[0])} → {pct(e.masked[0])} with its neurons removed; "
        f"random neurons {pct(e.control[0])} (mean of {e.n_seeds} seeds)." for e in effects]))
    parts.append(set_level)
    return "<h3>(c) What happens when they are removed?</h3>" + "".join(parts)


def _heatmap(ax: Axes, values: npt.NDArray[np.float64], rows: Sequence[str],
             cols: Sequence[str], labels: Sequence[Sequence[str]], cmap: str,
             limits: tuple[float, float]) -> AxesImage:
    image = ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            if text:
                hover(ax, (j - 0.5, i - 0.5, j + 0.5, i + 0.5), f"{rows[i]} x {cols[j]}: {text}")
            rgba = np.asarray(image.cmap(image.norm(values[i, j])))
            dark = float(rgba[:3] @ np.array([0.299, 0.587, 0.114])) < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    return image


def _symmetric(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    return -max(limit, 1e-9), max(limit, 1e-9)


def _fig_neurons_per_layer(counts: npt.NDArray[np.int_]) -> Figure:
    from matplotlib.ticker import MaxNLocator

    fig, ax = subplots(figsize=(10, 3.2), layout="constrained")
    image = ax.imshow(counts, aspect="auto", cmap="Blues", interpolation="nearest",
                      vmin=0, vmax=max(1, int(counts.max())))
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    for (row, layer), selected in np.ndenumerate(counts):
        if selected:
            hover(ax, (layer - 0.5, row - 0.5, layer + 0.5, row + 0.5),
                  f"{EMOTIONS[row]}, layer {layer}: {count(int(selected), 'neuron')}")
    for layers in _thirds(counts.shape[1])[:2]:
        if not layers:
            continue
        ax.axvline(layers[-1] + 0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("layer (0 = input side)")
    ax.set_ylabel("emotion")
    fig.colorbar(image, ax=ax, label="selected neurons", ticks=MaxNLocator(integer=True))
    return fig


def _fig_overlap(neurons: dict[str, Any]) -> Figure:
    names = [str(n) for n in neurons["overlap"]["emotions"]]
    counts = np.asarray(neurons["overlap"]["counts"], dtype=float)
    fig, ax = subplots(figsize=(6.5, 5), layout="constrained")
    labels = [[str(int(v)) for v in row] for row in counts]
    image = _heatmap(ax, counts, names, names, labels, "Blues", (0, max(1.0, counts.max())))
    ax.set_xlabel("emotion")
    ax.set_ylabel("emotion")
    fig.colorbar(image, ax=ax, label="neurons passing for both")
    return fig


def _fig_self_effect(effects: list[SelfEffect], chance: float) -> Figure:
    fig, ax = subplots(figsize=(10, 4), layout="constrained")
    x = np.arange(len(effects))
    bars = (("baseline", "baseline"), ("neurons removed", "masked"),
            ("random neurons (mean of seeds)", "control"))
    for k, (label, attr) in enumerate(bars):
        v = np.array([getattr(e, attr) for e in effects], dtype=float) * 100
        err = np.clip([v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], 0, None)
        ax.bar(x + (k - 1) * 0.27, v[:, 0], 0.27, yerr=err, capsize=3, label=label)
    ax.axhline(100 * chance, color="black", linestyle=":", label="chance")
    ax.set_xticks(x, [e.emotion for e in effects])
    ax.set_ylim(0, 105)
    ax.set_xlabel("emotion (its own neurons removed, evaluated on itself)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def _fig_matrix(effects: pd.DataFrame, column: str, label: str) -> Figure:
    def grid(col: str) -> npt.NDArray[np.float64]:
        pivot = effects.pivot_table(index="masked_emotion", columns="eval_emotion", values=col)
        return np.asarray(pivot.reindex(index=EMOTIONS, columns=EMOTIONS), dtype=float) * 100

    values = grid(column)
    labels = [["" if np.isnan(v) else f"{v:+.1f}" for v in row] for row in values]
    fig, ax = subplots(figsize=(7, 5.5), layout="constrained")
    image = _heatmap(ax, values, EMOTIONS, EMOTIONS, labels, "RdBu_r", _symmetric(values))
    ax.set_xlabel("evaluated emotion")
    ax.set_ylabel("masked emotion (neurons removed)")
    fig.colorbar(image, ax=ax, label=label)
    return fig


def _fig_sweep_heatmaps(sweep: pd.DataFrame, near: set[str]) -> Figure:
    emotions = [e for e in EMOTIONS if e in set(sweep["masked_emotion"])]
    ranges = [r for r in LAYER_RANGES if r in set(sweep["layer_range"])]
    proportions = sorted(float(p) for p in sweep["proportion"].unique())
    limits = _symmetric(sweep["drop"].to_numpy(dtype=float) * 100)
    fig, axes = panels(len(emotions))
    for ax, emotion in zip(axes, emotions, strict=True):
        pivot = sweep[sweep["masked_emotion"] == emotion].pivot_table(
            index="layer_range", columns="proportion", values="drop")
        values = np.asarray(pivot.reindex(index=ranges, columns=proportions), dtype=float) * 100
        labels = [["" if np.isnan(v) else f"{v:+.1f}" for v in row] for row in values]
        image = _heatmap(ax, values, ranges, [f"{100 * p:g}%" for p in proportions], labels,
                         "RdBu_r", limits)
        ax.set_title(titled(emotion, near))
        ax.set_xlabel("proportion removed")
        ax.set_ylabel("layer range")
    fig.colorbar(image, ax=axes, label="self accuracy drop vs baseline (points)")
    return fig


def _fig_dose_response(sweep: pd.DataFrame, baselines: dict[str, float], chance: float,
                       near: set[str]) -> Figure:
    emotions = [e for e in EMOTIONS if e in set(sweep["masked_emotion"])]
    fig, axes = panels(len(emotions))
    for ax, emotion in zip(axes, emotions, strict=True):
        own = sweep[sweep["masked_emotion"] == emotion]
        for layer_range in [r for r in LAYER_RANGES if r in set(own["layer_range"])]:
            line = own[own["layer_range"] == layer_range].groupby("proportion")["accuracy"].mean()
            ax.plot(line.index * 100, line.to_numpy() * 100, marker="o", label=layer_range)
        if emotion in baselines:
            ax.axhline(100 * baselines[emotion], color="black", linestyle="--", label="baseline")
        ax.axhline(100 * chance, color="grey", linestyle=":", label="chance")
        ax.set_ylim(0, 100)
        ax.set_title(titled(emotion, near))
        ax.set_xlabel("proportion removed (%)")
        ax.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=7)
    return fig


def _figures_html(run: RunResults, run_dir: RunDir, effects: list[SelfEffect],
                  counts: npt.NDArray[np.int_], near: set[str]) -> str:
    chance = float(run.manifest["evaluation"]["chance"])
    seeds = max((e.n_seeds for e in effects), default=0)
    specs: list[tuple[str, str, str, Callable[[], Figure]]] = [
        ("neurons_per_layer", "Selected neurons per layer",
         "Number of selected neurons of each emotion (rows) in each layer (columns). Darker cells "
         "hold more neurons; dashed lines split the layers into the bottom, middle and top thirds "
         "used in the summary.", partial(_fig_neurons_per_layer, counts)),
        ("overlap", "Overlap between emotions",
         "Cell (i, j) counts selected neurons passing the multi-emotion criterion (the activity "
         "bar for the lape assignment, the normalised threshold otherwise) for both "
         "emotion i and emotion j; the diagonal counts neurons passing for that emotion. Large "
         "off-diagonal counts mean the two emotions share neurons.",
         partial(_fig_overlap, run.neurons)),
        ("self_effect", "Accuracy on each emotion when its neurons are removed",
         f"Bars: accuracy with no neurons removed (baseline), with the emotion's selected neurons "
         f"zeroed, and with random layer-matched neurons zeroed (mean over {seeds} seeds). Error "
         "bars: 95% Wilson interval; for random neurons the bar spans the lowest to the highest CI "
         "bound over the seeds. A set that matters more than random neurons shows as a middle bar "
         "well below both others (the verdicts are the set-level tests'). "
         f"Dotted line: chance ({pct(chance)}).", partial(_fig_self_effect, effects, chance)),
        ("drop_matrix", "Accuracy drop by masked and evaluated emotion",
         "Baseline minus masked accuracy, in points, on each evaluated emotion (columns) when the "
         "neurons of the masked emotion (rows) are zeroed. Red: accuracy fell; blue: it rose; "
         "white: no change. A red diagonal with pale off-diagonal cells means each emotion's "
         "neurons matter for that emotion only.",
         partial(_fig_matrix, run.effects, "mask_drop", "accuracy drop (points)")),
        ("excess_matrix", "Excess drop over random neurons",
         f"Drop from removing the emotion neurons minus the mean drop from random layer-matched "
         f"neurons ({seeds} seeds), in points; rows masked emotion, columns evaluated emotion. "
         "Red: the emotion neurons matter more than these random neurons. A description, not a "
         "test: a few random sets vary too much to judge a set by (the verdicts are the "
         "set-level tests').",
         partial(_fig_matrix, run.effects, "excess_drop", "excess drop (points)")),
    ]
    sweep = sweep_self(run)
    if sweep is not None:
        specs += [
            ("sweep_heatmaps", "Sweep: self accuracy drop by layer range and proportion",
             "One panel per masked emotion: baseline minus accuracy on that same emotion, in "
             "points, when the given proportion (columns) is removed within a layer range (rows). "
             "Red: accuracy fell; colours centred at 0 and shared across panels.",
             partial(_fig_sweep_heatmaps, sweep, near)),
            ("sweep_dose_response", "Sweep: accuracy against proportion removed",
             "Accuracy on each emotion against the proportion removed, one line per layer range. "
             "Dashed: baseline; dotted: chance. The layer range whose line falls fastest holds the "
             "neurons that matter most.",
             partial(_fig_dose_response, sweep, baseline_accuracy(run.ablation), chance, near)),
        ]
    render = partial(render_figure, run_dir.file(FIGURES))
    html = ("".join(render(*spec) for spec in specs)
            + dose_figures(run_dir.read_csv(DOSE, optional=True), near, render)
            + confusion_figure(run_dir.read_csv(CONFUSION, optional=True), render))
    if sweep is None:
        for name in SWEEP_FIGURES:  # do not leave figures of an earlier sweep beside this report
            remove_figure(run_dir.file(FIGURES), name)
        html += ('<p class="note">No layer-range x proportion sweep in this run (sweep.csv '
                 "missing or without self-effect rows), so its figures are omitted.</p>")
    return html


def _cards_line(index: dict[str, Any] | None, emotion: str) -> str:
    """Links to the neuron cards of ``emotion``'s top neurons, when the run wrote them."""
    if index is None:
        return ""
    cards = index["emotions"].get(emotion, [])
    links = " · ".join(f'<a href="cards/{escape(c["html"])}">L{c["layer"]}-N{c["index"]}</a>'
                       for c in cards)
    return f'<p class="note">Cards: {links}</p>' if links else ""


def _stability_html(report: dict[str, Any] | None) -> str:
    """Bootstrap and shuffled-label numbers beside each emotion's set (stability.json)."""
    if report is None:
        return ""
    rows = []
    for emotion in EMOTIONS:
        entry = report["emotions"].get(emotion, {})
        boot = entry.get("bootstrap_jaccard_to_full")
        null = entry.get("null_count")
        rows.append([emotion, entry.get("count", "-"),
                     f"{boot['mean']:.2f} [{boot['p05']:.2f}, {boot['p95']:.2f}]" if boot else "-",
                     f"{null['mean']:.1f} (max {null['max']})" if null else "-"])
    return ("<h3>How stable is each set?</h3>"
            + table(["emotion", "neurons", "bootstrap Jaccard to the full set [5%, 95%]",
                     "neurons the same rule finds on shuffled labels"], rows)
            + f'<p class="note">{report.get("resamples", 0)} resamples of the identification '
            f'dialogue groups and {report.get("permutations", 0)} label permutations '
            f"(statistic {escape(str(report.get('statistic')))}, rule "
            f"{escape(str(report.get('rule')))}). A Jaccard near 1 means a resample finds the "
            "same neurons; a shuffled-label count far below the real count means the rule does "
            "not find that many neurons in noise.</p>")


def _tables_html(effects: list[SelfEffect], neurons: dict[str, Any], run_dir: RunDir) -> str:
    cards = run_dir.read_json(CARDS_INDEX, optional=True)
    stability = _stability_html(run_dir.read_json(STABILITY, optional=True))
    self_table = table(
        ["emotion", "n", "baseline [95% CI]", "masked [95% CI]", "random control (mean of seeds)",
         "excess over random sets (set-level), points [95% interval]", "p (Holm)", "verdict"],
        [[e.emotion, e.n, with_ci(e.baseline, pct), with_ci(e.masked, pct),
          pct(e.control[0]), with_ci(e.excess, pp), f"{e.p_value:.3f}", e.verdict]
         for e in effects])
    tops = "".join("<div>" + table(["layer", "index", "score"],
                                   [[n["layer"], n["index"], f"{float(n['score']):.3f}"]
                                    for n in neurons["emotions"].get(emotion, [])[:10]], emotion,
                                   table_id=f"top-{emotion}")
                   + _cards_line(cards, emotion) + "</div>"
                   for emotion in EMOTIONS)
    links = " · ".join(f'<a href="#top-{e}">{e}</a>' for e in EMOTIONS)
    return (f"<h3>Self effect per emotion</h3>{self_table}{stability}"
            f"<p>Top neurons of each emotion: {links}</p>"
            f'<h3>Top 10 neurons per emotion</h3><div class="tables">{tops}</div>')


def _value(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def timing_rows(timings: dict[str, float]) -> list[list[str]]:
    """The timings table: each stage, then the run's own totals (``total_before_report``,
    and ``total`` once the report was written), or the stages' sum where it wrote none. The
    totals are never added to the stages again.

    >>> timing_rows({"record": 2.0, "ablation": 3.0, "total_before_report": 5.5})
    [['record', '2.0'], ['ablation', '3.0'], ['total before the report', '5.5']]
    """
    totals = {"total_before_report": "total before the report", "total": "total"}
    rows = [[k, f"{float(v):.1f}"] for k, v in timings.items() if k not in totals]
    written = [[label, f"{float(timings[k]):.1f}"] for k, label in totals.items() if k in timings]
    stages = sum(float(v) for k, v in timings.items() if k not in totals)
    return rows + (written or [["total", f"{stages:.1f}"]])


def _details_html(manifest: dict[str, Any]) -> str:
    model, data, evaluation = manifest["model"], manifest["data"], manifest["evaluation"]
    splits = list(data["counts"])
    counts = [[e, *(data["counts"][s].get(e, 0) for s in splits)] for e in EMOTIONS]
    counts.append(["total", *(sum(data["counts"][s].values()) for s in splits)])
    timings = timing_rows(manifest["timings"])
    versions = {"emoneuron": manifest["emoneuron_version"], **manifest["versions"]}
    sections = [
        ("Model", table(["field", "value"], [[k, _value(v)] for k, v in model.items()])),
        (f"Data (hash {data['hash']})", table(["emotion", *splits], counts)),
        ("Evaluation", table(["field", "value"], [
            ["description", evaluation["description"]], ["shots", evaluation["n_shot"]],
            ["chance", pct(float(evaluation["chance"]))]])),
        ("Configuration", table(["key", "value"],
                                 [[k, _value(v)]
                                  for k, v in flat_settings(manifest["config"]).items()])),
        ("Timings", table(["stage", "seconds"], timings)),
        ("Versions", table(["package", "version"], [[k, _value(v)] for k, v in versions.items()])),
    ]
    return "".join(f"<h3>{escape(heading)}</h3>{html}" for heading, html in sections)


def write_report(directory: str | Path) -> Path:
    """Write ``report.html`` and ``figures/*.png|svg`` into the run directory ``directory``
    from its verified files; return the report path."""
    run_dir = RunDir(directory)
    run_dir.check_listed()
    run_dir.check_writable("report", [REPORT], [FIGURES])
    run = load_results(run_dir)
    near = near_chance_emotions(run.every_control)
    effects = self_effects(run)
    counts = layer_counts(run.neurons)
    model, evaluation = run.manifest["model"], run.manifest["evaluation"]
    title = f"Emotion neurons in {model['name']}"
    subtitle = (f"{model['n_layers']} layers x {model['width']} neurons · site {model['site']} · "
                f"run created {run.manifest['created']}")
    methods = run_dir.read_csv(METHODS_TABLE, optional=True)
    set_level = run_dir.read_csv(SET_LEVEL, optional=True)
    baseline = float(np.mean(list(baseline_accuracy(run.ablation).values())))
    summary = (run_statement(run.manifest, baseline)
               + existence_summary(run.neurons, run.manifest,
                                   run_dir.read_json(STABILITY, optional=True))
               + _summary_where(counts)
               + _summary_effects(effects, float(evaluation["chance"]), evaluation["description"],
                                  set_level_summary(set_level), near)
               + methods_summary(methods))
    directions = directions_html(run_dir.read_csv(DIRECTIONS_SET_LEVEL, optional=True),
                                 run_dir.read_json(DIRECTIONS_DESCRIPTION, optional=True))
    units = units_html(run_dir.read_csv(UNITS, optional=True))
    html = page(title, subtitle, [
        Section("summary", "Summary", summary),
        Section("figures", "Figures", _figures_html(run, run_dir, effects, counts, near)),
        Section("set-level", "Emotion sets against many random sets (the verdicts)",
                set_level_html(set_level, run_dir.read_json(PROBE_DESCRIPTION, optional=True))
                + formats_html(set_level, run_dir.read_csv(FORMATS_SET_LEVEL, optional=True))
                + effect_sweep_html(run_dir.read_csv(SWEEP_SET_LEVEL, optional=True))),
        *([Section("directions", "Emotion directions against random directions",
                   directions)] if directions else []),
        *([Section("units", "Neurons or directions: one comparison", units)]
          if units else []),
        Section("controls", "Emotion neurons against every control",
                controls_table(run, run_dir.table(SPECIFICITY), near)),
        Section("methods", "Which selection finds neurons that matter",
                methods_html(methods, partial(render_figure, run_dir.file(FIGURES)))),
        Section("steering", "Steering",
                steering_html(run_dir.read_json(STEERING, optional=True))
                + judged_steering_html(
                    run_dir.read_csv(STEERING_JUDGES, optional=True),
                    run_dir.read_json(STEERING_JUDGES_DESCRIPTION, optional=True))),
        Section("tables", "Tables", _tables_html(effects, run.neurons, run_dir)),
        Section("details", "Run details", _details_html(run.manifest)),
    ])
    path = run_dir.file(REPORT)
    with atomic_open(path) as handle:
        handle.write(html)
    return path
