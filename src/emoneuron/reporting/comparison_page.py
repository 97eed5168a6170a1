"""``compare.html``: the comparison of runs (:mod:`emoneuron.reporting.comparison_stats`)
as a page, in words, figures and tables, and ``write_comparison``, which writes it beside the
comparison's tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emoneuron.causal.config import LAYER_RANGES
from emoneuron.causal.inference.summaries import BALANCED, CORPUS_WEIGHTED, OVERALL
from emoneuron.data.schema import EMOTIONS
from emoneuron.io import atomic_open, write_csv, write_json
from emoneuron.layout import COMPARISON, FIGURES
from emoneuron.reporting.comparison_stats import (
    DISTANCE,
    POOLED,
    ComparedRun,
    differences,
    distance_table,
    fixed,
    load_runs,
    mean_depth,
    per_emotion_table,
    size_trend,
    sweep_by_depth,
    synthetic_baselines,
    units_table,
)
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
from emoneuron.reporting.units_section import INTRO as UNITS_INTRO
from emoneuron.reporting.units_section import carried_text, result_cell

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEPTH_TENTH = 0.1  # the depth figure's unit: the share of an emotion's neurons per 0.1 depth


def _bar_hover(ax: Any, x: float, width: float, value: float, text: str) -> None:
    hover(ax, (x - width / 2, min(0.0, value), x + width / 2, max(0.0, value)), text)


def _fig_share(runs: Sequence[ComparedRun], frame: pd.DataFrame) -> Figure:
    fig, ax = subplots(figsize=(10, 4), layout="constrained")
    width = 0.8 / len(runs)
    x = np.arange(len(EMOTIONS))
    for k, run in enumerate(runs):
        shares = frame[frame["run"] == run.label].set_index("emotion").loc[list(EMOTIONS)]
        values = shares["share_of_neurons"].to_numpy(dtype=float) * 100
        offset = x + (k - (len(runs) - 1) / 2) * width
        ax.bar(offset, values, width, label=run.label, color=f"C{k}")
        for xi, value, emotion, n in zip(offset, values, EMOTIONS, shares["n_neurons"],
                                         strict=True):
            _bar_hover(ax, xi, width, value, f"{run.label}, {emotion}: {n} neurons, "
                       f"{value:.3f}% of {run.n_neurons:,}")
    ax.set_xticks(x, EMOTIONS)
    ax.set_xlabel("emotion")
    ax.set_ylabel("selected neurons (% of all neurons)")
    ax.legend()
    return fig


def _fig_depth(runs: Sequence[ComparedRun], distances: pd.DataFrame) -> Figure:
    fig, axes = panels(len(EMOTIONS))
    for ax, emotion in zip(axes, EMOTIONS, strict=True):
        for k, run in enumerate(runs):
            positions, weights = run.depths(emotion)
            if not weights.sum():
                continue
            # Each layer spans 1/L of the depth; dividing its share by that span makes models
            # of different depth comparable (a density, scaled to a tenth of the depth).
            shares = weights / weights.sum()
            density = shares * run.n_layers * DEPTH_TENTH * 100
            edges = np.append(positions, 1.0)
            ax.stairs(density, edges, label=run.label, color=f"C{k}", linewidth=2)
            for layer, (left, value) in enumerate(zip(positions, density, strict=True)):
                hover(ax, (left, 0, left + 1 / run.n_layers, max(value, 1.0)),
                      f"{run.label}, {emotion}, layer {layer} (depth {left:.2f}): "
                      f"{pct(shares[layer], 0)} of its neurons")
        pairs = distances[distances["emotion"] == emotion]
        if len(runs) == 2:
            ax.set_title(f"{emotion} (W1 = {float(pairs['wasserstein'].iloc[0]):.2f})")
        else:
            ax.set_title(emotion)
        for boundary in (1 / 3, 2 / 3):
            ax.axvline(boundary, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("relative depth (layer / layers)")
        ax.set_ylabel("% of its neurons per 0.1 depth")
    axes[0].legend(fontsize=7)
    return fig


def _fig_drops(runs: Sequence[ComparedRun], frame: pd.DataFrame) -> Figure:
    fig, ax = subplots(figsize=(11, 4.2), layout="constrained")
    width = 0.8 / (2 * len(runs))
    x = np.arange(len(EMOTIONS))
    for k, run in enumerate(runs):
        rows = frame[frame["run"] == run.label].set_index("emotion").reindex(list(EMOTIONS))
        for j, (column, kind) in enumerate((("mask_drop", "its neurons"),
                                            ("control_drop", "random neurons"))):
            values = rows[column].to_numpy(dtype=float) * 100
            offset = x + (2 * k + j - (2 * len(runs) - 1) / 2) * width
            ax.bar(offset, values, width, color=f"C{k}", alpha=1.0 if j == 0 else 0.45,
                   hatch="" if j == 0 else "//", label=f"{run.label}: {kind} removed")
            for xi, value, emotion in zip(offset, values, EMOTIONS, strict=True):
                if np.isfinite(value):
                    _bar_hover(ax, xi, width, value,
                               f"{run.label}, {emotion}, {kind} removed: {value:+.1f} points")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, EMOTIONS)
    ax.set_xlabel("emotion (its own neurons or random ones removed, evaluated on itself)")
    ax.set_ylabel("accuracy drop vs baseline (points)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def _fig_sweep(runs: Sequence[ComparedRun], sweep: pd.DataFrame) -> Figure:
    emotions = [e for e in EMOTIONS if e in set(sweep["masked_emotion"])]
    fig, axes = panels(len(emotions))
    for ax, emotion in zip(axes, emotions, strict=True):
        for k, run in enumerate(runs):
            rows = sweep[(sweep["run"] == run.label) & (sweep["masked_emotion"] == emotion)
                         & (sweep["layer_range"] != "all")]
            if rows.empty:
                continue
            top = rows[rows["proportion"] == rows["proportion"].max()].sort_values("depth_from")
            drops = top["drop"].to_numpy(dtype=float) * 100
            ax.stairs(drops, [*top["depth_from"], float(top["depth_to"].iloc[-1])],
                      color=f"C{k}", linewidth=2, baseline=None,
                      label=f"{run.label} ({100 * float(top['proportion'].iloc[0]):g}%)")
            centres = (top["depth_from"] + top["depth_to"]).to_numpy(dtype=float) / 2
            ax.plot(centres, drops, "o", color=f"C{k}")
            for row, drop in zip(top.itertuples(), drops, strict=True):
                hover(ax, (row.depth_from, min(0.0, drop), row.depth_to, max(0.0, drop)),
                      f"{run.label}, {emotion}, {row.layer_range} third, "
                      f"{100 * row.proportion:g}% removed ({row.n_masked} neurons): "
                      f"drop {drop:+.1f} points")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_title(emotion)
        ax.set_xlabel("relative depth of the masked third")
        ax.set_ylabel("self accuracy drop (points)")
    axes[0].legend(fontsize=7)
    return fig


def _fmt(value: float, fmt: Callable[[float], str]) -> str:
    return fmt(value) if np.isfinite(value) else "n/a"


def _summary(runs: Sequence[ComparedRun], frame: pd.DataFrame, distances: pd.DataFrame,
             sweep: pd.DataFrame, diffs: dict[str, list[str]], trend: pd.DataFrame) -> str:
    shapes = "; ".join(f"{r.label}: {r.n_layers} layers, {r.n_neurons:,} neurons" for r in runs)
    parts = [f"<p>{escape(f'Compared {len(runs)} runs. {shapes}.')}</p>"]
    if diffs:
        rows = [[key, *values] for key, values in diffs.items()]
        parts.append('<div class="warn"><b>Warning: these runs differ in more than the model'
                     "</b>, so differences below may come from the data or settings, not the "
                     f"model alone. {count(len(diffs), 'difference')}:"
                     + table(["what", *(r.label for r in runs)], rows, table_id="differences")
                     + "</div>")
    shares = []
    for run in runs:
        rows = frame[frame["run"] == run.label]
        per = ", ".join(f"{e} {pct(s, 2)}" for e, s in zip(rows["emotion"],
                                                             rows["share_of_neurons"],
                                                             strict=True))
        total = int(rows["n_neurons"].sum())
        shares.append(f"{run.label}: {count(total, 'neuron')} selected "
                      f"({pct(total / run.n_neurons, 2)} of its neurons; {per}).")
    parts.append(f"<h3>(a) How many emotion neurons?</h3>{ul(shares)}")
    depth = []
    for run in runs:
        positions = np.arange(run.n_layers) / run.n_layers
        weights = run.counts.sum(axis=0).astype(float)
        depth.append(f"{run.label}: mean relative depth of all selected neurons "
                     f"{_fmt(mean_depth(positions, weights), lambda v: f'{v:.2f}')}.")
    for (a, b), pairs in distances.groupby(["run_a", "run_b"], sort=False):
        finite = pairs[pairs["emotion"] != POOLED].dropna(subset=["wasserstein"])
        listed = ", ".join(f"{e} {fixed(w, 2)}" for e, w in
                           zip(pairs["emotion"], pairs["wasserstein"], strict=True))
        text = f"{a} vs {b}, Wasserstein distance over relative depth per emotion: {listed}"
        if not finite.empty:
            far = finite.loc[finite["wasserstein"].idxmax()]
            text += f"; most different: {far['emotion']} ({float(far['wasserstein']):.2f})"
        depth.append(text + ".")
    parts.append("<h3>(b) Where are they, relative to depth?</h3><p>Relative depth = layer / "
                 "number of layers (0 = input side). Distance 0 = same placement, at most 1."
                 f"</p>{ul(depth)}")
    removal = []
    for run in runs:
        rows = frame[frame["run"] == run.label].dropna(subset=["excess_drop"])
        beyond = [str(e) for e, v in zip(rows["emotion"], rows["beyond"], strict=True) if v]
        removal.append(f"{run.label}: own drop beyond random sets (set-level test, Holm) for "
                       f"{', '.join(beyond) or 'no emotion'}; excess over random sets "
                       + ", ".join(f"{e} {_fmt(v, pp)}" for e, v in
                                   zip(rows["emotion"], rows["excess_drop"], strict=True))
                       + " points.")
    parts.append(f"<h3>(c) What does removing them do?</h3>{ul(removal)}")
    parts.append(f"<h3>(d) Which depth matters in the sweep?</h3>{_summary_sweep(runs, sweep)}")
    parts.append(f"<h3>(e) How does it change with model size?</h3>{_summary_size(runs, trend)}")
    return "".join(parts)


def _summary_size(runs: Sequence[ComparedRun], trend: pd.DataFrame) -> str:
    if not np.isfinite([r.parameters for r in runs]).all():
        return ('<p class="note">A run without its parameter count in manifest.json (written '
                "before it was recorded): no trend by size.</p>")
    sizes = ", ".join(f"{r.label} {r.parameters / 1e6:,.0f}M" for r in
                      sorted(runs, key=lambda r: r.parameters))
    items = []
    for statistic, name, fmt in (("share_of_neurons", "share of neurons", "{:+.2f}"),
                                 ("mean_relative_depth", "mean relative depth", "{:+.2f}"),
                                 ("baseline", "synthetic baseline", "{:+.2f}")):
        rows = trend[trend["statistic"] == statistic].drop_duplicates("emotion")
        listed = ", ".join(f"{e} {_fmt(v, fmt.format)}"
                           for e, v in zip(rows["emotion"], rows["spearman_log_parameters"],
                                           strict=True))
        items.append(f"{name}: Spearman correlation with log parameter count per emotion: "
                     f"{listed}.")
    for pair, rows in trend[trend["pair"] != ""].groupby("pair", sort=False):
        depth = rows[rows["statistic"] == "mean_relative_depth"]
        items.append(f"{pair}, change of mean relative depth [bootstrap percentile "
                     "interval]: " + ", ".join(
            f"{row.emotion} {_fmt(row.pair_change, '{:+.2f}'.format)} "
            f"[{_fmt(row.pair_ci_low, '{:+.2f}'.format)}, "
            f"{_fmt(row.pair_ci_high, '{:+.2f}'.format)}]" for row in depth.itertuples()) + ".")
    note = (f"Parameters: {sizes}. With {len(runs)} models a correlation is a description, "
            "not a test: no significance is claimed from it.")
    return f"<p>{escape(note)}</p>" + ul(items)


def _summary_sweep(runs: Sequence[ComparedRun], sweep: pd.DataFrame) -> str:
    items = []
    for run in runs:
        rows = sweep[(sweep["run"] == run.label) & (sweep["layer_range"] != "all")]
        if rows.empty:
            items.append(f"{run.label}: no sweep in this run.")
            continue
        top = rows[rows["proportion"] == rows["proportion"].max()]
        outcome = []  # per emotion: the third with the largest drop, "tie" or "none"
        for _, own in top.groupby("masked_emotion"):
            largest = own[own["drop"] == own["drop"].max()]
            if float(largest["drop"].iloc[0]) <= 0:
                outcome.append("none")
            else:
                outcome.append(str(largest["layer_range"].iloc[0]) if len(largest) == 1
                               else "tie")
        counts = {k: outcome.count(k) for k in (*LAYER_RANGES[:3], "tie", "none")}
        ranking = [f"the {r} third for {count(counts[r], 'emotion')}"
                   for r in LAYER_RANGES[:3] if counts[r]]
        rest = [f"{counts['tie']} tied between thirds"] if counts["tie"] else []
        rest += [f"{counts['none']} lost no accuracy in any third"] if counts["none"] else []
        items.append(f"{run.label}: removing {100 * float(top['proportion'].iloc[0]):g}% of an "
                     f"emotion's neurons within one third hurts most in "
                     f"{', '.join(ranking) or 'no third'}" + "".join(f"; {r}" for r in rest)
                     + ".")
    return ul(items)


def _depth_with_ci(row: Any) -> str:
    value = fixed(row.mean_relative_depth, 2)
    if not np.isfinite(row.mean_relative_depth_ci_low):
        return value
    return f"{value} [{row.mean_relative_depth_ci_low:.2f}, {row.mean_relative_depth_ci_high:.2f}]"


def _accuracy(row: pd.Series) -> str:
    if not np.isfinite(row["ci_low"]):
        return _fmt(float(row["accuracy"]), pct)
    return with_ci((float(row["accuracy"]), float(row["ci_low"]), float(row["ci_high"])), pct)


def _baseline_rows(runs: Sequence[ComparedRun]) -> list[list[object]]:
    """Per run and label, the synthetic and the extra corpus baseline side by side."""
    rows: list[list[object]] = []
    for run in runs:
        synthetic = synthetic_baselines(run).set_index("emotion")
        extra = run.run.baseline_extra
        extra = extra.set_index("emotion") if extra is not None else None
        labels = [*EMOTIONS, OVERALL, BALANCED] + ([] if extra is None else [
            label for label in extra.index if label not in (*EMOTIONS, OVERALL, BALANCED)])
        for label in labels:
            own = [int(synthetic.loc[label, "n"]), _accuracy(synthetic.loc[label])] \
                if label in synthetic.index else ["", ""]
            other = ["", "", "no extra corpus" if label == EMOTIONS[0] else ""] \
                if extra is None or label not in extra.index else [
                f"{int(extra.loc[label, 'available']):,}", int(extra.loc[label, "n"]),
                _accuracy(extra.loc[label]) if int(extra.loc[label, "n"]) else "not evaluated"]
            rows.append([run.label, label, *own, *other])
    return rows


def _trend_rows(trend: pd.DataFrame) -> list[list[object]]:
    return [[row.emotion, row.statistic, row.values_by_size, row.n_models,
             fixed(row.spearman_log_parameters, 2), fixed(row.slope_per_tenfold_parameters,
                                                              4),
             row.pair or "no family at two sizes",
             fixed(row.pair_change, 4) + ("" if not np.isfinite(row.pair_ci_low) else
                                            f" [{row.pair_ci_low:.4f}, {row.pair_ci_high:.4f}]")]
            for row in trend.itertuples()]


def _tables(runs: Sequence[ComparedRun], frame: pd.DataFrame, distances: pd.DataFrame,
            sweep: pd.DataFrame, trend: pd.DataFrame) -> str:
    run_rows = [[r.label, str(r.directory), r.run.manifest["model"]["name"],
                 _fmt(r.parameters, "{:,.0f}".format), r.n_layers,
                 r.run.manifest["model"]["width"], r.n_neurons,
                 str(r.run.manifest["data"]["hash"])[:12], r.run.manifest["created"]]
                for r in runs]
    emotion_rows = [
        [row.emotion, row.run, row.n_neurons, pct(row.share_of_neurons, 3),
         _depth_with_ci(row),
         *(_fmt(getattr(row, f"share_{t}"), pct) for t in LAYER_RANGES[:3]),
         *((_fmt(row.mask_drop, pp), _fmt(row.control_drop, pp),
            with_ci((row.excess_drop, row.excess_ci_low, row.excess_ci_high), pp),
            fixed(row.p_value), row.verdict) if hasattr(row, "verdict")
           and isinstance(row.verdict, str) else ("n/a",) * 5)]
        for row in frame.itertuples()]
    distance_rows = [[row.emotion, row.run_a, row.run_b, fixed(row.wasserstein),
                      fixed(row.mean_depth_a, 2), fixed(row.mean_depth_b, 2)]
                     for row in distances.itertuples()]
    sweep_rows = [[row.run, row.masked_emotion, row.layer_range,
                   f"{row.depth_from:.2f}-{row.depth_to:.2f}", f"{100 * row.proportion:g}%",
                   row.n_masked, pct(row.accuracy), pp(row.drop)]
                  for row in sweep.itertuples()]
    return (
        "<h3>Runs</h3>" + table(["run", "directory", "model", "parameters", "layers",
                                 "neurons per layer",
                                 "neurons", "data hash", "created"], run_rows, table_id="runs")
        + "<h3>Per emotion and run</h3>"
        + '<p class="note">Mean relative depth: on all dialogues, with the 2.5th and 97.5th '
        "percentiles over the bootstrap resamples of dialogue groups. In a simulation with known "
        "answers (docs/methods.md, bench/depth_coverage.py) this interval covered the true depth "
        "in 69-94% of cases, not 95%, and the truth lay above it far more often than below: read "
        "it as the spread of the set's placement over samples of dialogues.</p>" + table(
            ["emotion", "run", "neurons", "share of all",
             "mean relative depth [bootstrap percentile interval]", "bottom third",
             "middle third", "top third", "masked drop, points", "random drop, points",
             "excess over random sets, points [95% interval]", "p (Holm)", "verdict"],
            emotion_rows,
            table_id="per-emotion")
        + f"<h3>Distance between placements ({escape(DISTANCE)})</h3>" + table(
            ["emotion", "run A", "run B", "distance", "mean depth A", "mean depth B"],
            distance_rows, table_id="distances")
        + "<h3>Baselines: the unchanged model, synthetic evaluation split and extra corpus</h3>"
        + '<p class="note">Accuracy [Wilson 95% CI]. Extra corpus: at most --baseline-per-emotion '
        "records of each emotion drawn with the run's seed; <i>available</i> is the corpus's "
        f"real count of each label. {BALANCED}: mean of the six; {CORPUS_WEIGHTED}: weighted by "
        "the real counts.</p>" + table(
            ["run", "label", "synthetic n", "synthetic accuracy", "extra available",
             "extra n", "extra accuracy"], _baseline_rows(runs), table_id="baselines")
        + "<h3>Change with model size</h3>"
        + '<p class="note">Values in order of parameter count; Spearman correlation and slope '
        "(per tenfold parameters) across all runs, descriptive only; the family pair's change "
        "is larger minus smaller with an interval where one exists (mean relative depth: "
        "percentile interval of the two runs' bootstrap differences, coverage not simulated; "
        "accuracies: Newcombe 95%).</p>" + table(
            ["emotion", "statistic", "values by size", "models", "Spearman (log parameters)",
             "slope per 10x parameters", "family pair", "pair change [interval]"],
            _trend_rows(trend), table_id="size-trend")
        + "<h3>Sweep by relative depth (self-evaluated)</h3>" + (table(
            ["run", "emotion", "layer range", "relative depth", "removed", "neurons removed",
             "accuracy", "drop, points"], sweep_rows, table_id="sweep-by-depth") if sweep_rows
            else '<p class="note">No run has a sweep.</p>'))


def _figures(runs: Sequence[ComparedRun], out: Path, frame: pd.DataFrame,
             distances: pd.DataFrame, sweep: pd.DataFrame) -> str:
    specs: list[tuple[str, str, str, Callable[[], Figure]]] = [
        ("share", "Emotion neurons as a share of all neurons",
         "Selected neurons of each emotion as a percentage of all FFN neurons of the model, one "
         "bar per run. Share, not count, because the models differ in size.",
         partial(_fig_share, runs, frame)),
        ("depth", "Where each emotion's neurons sit, by relative depth",
         f"Per emotion, how its selected neurons spread over the model's depth (layer / "
         f"layers; 0 = input side): each layer's share of them, divided by the layer's span of "
         f"depth and shown per tenth of depth, so models with different numbers of layers "
         f"share one scale; one line per run. Dashed lines: the thirds used by the sweep. W1 "
         f"in the title ({DISTANCE}): 0 = same placement, at most 1.",
         partial(_fig_depth, runs, distances)),
        ("drops", "Accuracy drop when an emotion's neurons are removed, against random neurons",
         "Per emotion, evaluated on itself: the drop in accuracy (baseline minus masked, in "
         "points) when its selected neurons are zeroed (solid) and when as many random "
         "layer-matched neurons are zeroed (hatched, mean over seeds), one colour per run. A "
         "specific effect shows as a solid bar well above its hatched neighbour.",
         partial(_fig_drops, runs, frame)),
    ]
    if not sweep.empty:
        specs.append((
            "sweep", "Sweep: drop by relative depth of the masked third",
            "Per emotion, the self accuracy drop (points) when the largest swept proportion "
            "(in the legend) of its neurons is removed within the bottom, middle or top third of "
            "the layers, drawn over the third's span of relative depth; one line per run.",
            partial(_fig_sweep, runs, sweep)))
    html = "".join(render_figure(out / FIGURES, *spec) for spec in specs)
    if sweep.empty:
        remove_figure(out / FIGURES, "sweep")  # no stale figure of an earlier comparison
        html += '<p class="note">No run has a sweep, so its figure is omitted.</p>'
    return html


def _units_html(units: pd.DataFrame) -> str:
    """Per emotion and run, its neuron set and its direction removed at every position (own
    accuracy, each against its random null) and which unit carries the emotion; "" where no
    run has a ``units.csv``."""
    if units.empty:
        return ""
    whole = units[(units.effect == "removal") & (units.scope == "all")
                  & (units.statistic == "own")]
    body = []
    for emotion in EMOTIONS:
        for run in dict.fromkeys(units.run):
            rows = whole[(whole.emotion == emotion) & (whole.run == run)]
            body.append([emotion, run, *(result_cell(rows[rows.unit == unit])
                                         for unit in ("neurons", "direction")),
                         carried_text(units[units.run == run], emotion)])
    return (f'<p class="note">{escape(UNITS_INTRO)} Numbers: compare_units.csv, every run\'s '
            "units.csv with its label.</p>" + table(
                ["emotion", "run", "its neurons removed at every position",
                 "its direction removed at every position", "which unit carries it"],
                body, "Own-emotion accuracy drop (classifier), excess over the unit's random "
                      "null, points [95% interval]", table_id="units"))


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Compare run directories into ``out``: ``compare.html``, ``compare.csv`` (one row per run
    x emotion), ``compare_units.csv`` (:func:`units_table`), ``distances.csv`` (every pair of
    runs, per emotion and pooled), ``size_trend.csv`` (:func:`size_trend`), ``compare.json``
    (runs, differences, distances, sweep by relative depth, size trend, baselines) and
    ``figures/*.png|svg``. Return the HTML path."""
    out_dir = Path(out)
    runs = load_runs(run_dirs)
    diffs = differences(runs)
    frame = per_emotion_table(runs)
    distances = distance_table(runs)
    sweep = sweep_by_depth(runs)
    trend = size_trend(runs, frame)
    units = units_table(runs)
    write_csv(out_dir / "compare.csv", frame)
    write_csv(out_dir / "compare_units.csv", units)
    write_csv(out_dir / "distances.csv", distances)
    write_csv(out_dir / "size_trend.csv", trend)
    write_json(out_dir / COMPARISON, {
        "runs": [{"label": r.label, "directory": str(r.directory),
                  "model": r.run.manifest["model"], "data_hash": r.run.manifest["data"]["hash"]}
                 for r in runs],
        "differences": diffs,
        "distance": DISTANCE,
        "distances": json.loads(distances.to_json(orient="records")),
        "sweep": json.loads(sweep.to_json(orient="records")),
        "size_trend": json.loads(trend.to_json(orient="records")),
        "baselines": {r.label: {
            "synthetic": json.loads(synthetic_baselines(r).to_json(orient="records")),
            "extra": None if r.run.baseline_extra is None
            else json.loads(r.run.baseline_extra.to_json(orient="records"))} for r in runs},
    })
    title = "Emotion neurons across models: " + " vs ".join(r.label for r in runs)
    subtitle = f"{len(runs)} runs · relative depth = layer / layers · distance: {DISTANCE}"
    html = page(title, subtitle, [
        Section("summary", "Summary", _summary(runs, frame, distances, sweep, diffs, trend)),
        Section("figures", "Figures", _figures(runs, out_dir, frame, distances, sweep)),
        *([Section("units", "Neurons or directions, per run", _units_html(units))]
          if not units.empty else []),
        Section("tables", "Tables", _tables(runs, frame, distances, sweep, trend)),
    ])
    path = out_dir / "compare.html"
    with atomic_open(path) as handle:
        handle.write(html)
    return path
