"""Compare runs of different models side by side: how many emotion neurons, where in the depth
of the model, what removing them does, and which depth range matters in the sweep.

Models differ in depth (SmolLM2-135M has 30 layers, Gemma-3-270M 18), so layers are compared as
*relative depth*: layer ``l`` of ``L`` sits at ``l / L`` (0 = the first layer; the thirds of
the sweep are exactly ``[0, 1/3)``, ``[1/3, 2/3)`` and ``[2/3, 1)``). Two models' placements of
one emotion are compared with the 1-D Wasserstein distance between their neurons' relative
depths (each neuron one unit of mass): the area between the two cumulative distributions, in
units of relative depth, 0 for the same placement and at most 1.

How each statistic changes with model size (:func:`size_trend`): within a family run at two
sizes (the two Qwen2.5-Coder models), the difference from the smaller to the larger model with
a nominal 95% interval where one exists (the mean relative depth: percentile interval of the
difference of the two runs' independent bootstrap replicates; an accuracy: Newcombe's interval);
across all runs, Spearman's rank correlation with log parameter count and the least-squares
slope per tenfold more parameters. With four models these are descriptions, not tests: no p-value.

Only run directories are read (``manifest.json``, ``neurons.json``, ``ablation.csv``,
``effects.csv`` and, when present, ``sweep.csv``, ``stability.json`` and
``baseline_extra.csv``); nothing is recomputed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from emoneuron.causal.config import LAYER_RANGES
from emoneuron.causal.significance import Interval, newcombe_interval
from emoneuron.causal.summaries import BALANCED, CORPUS_WEIGHTED, OVERALL, summary_rows
from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import atomic_open, write_csv, write_json
from emoneuron.layout import COMPARISON, FIGURES
from emoneuron.options import flat_settings
from emoneuron.reporting.html import (
    Section,
    count,
    hover,
    page,
    panels,
    pct,
    pp,
    render_figure,
    table,
    ul,
    with_ci,
)
from emoneuron.reporting.results import (
    RunResults,
    SelfEffect,
    layer_counts,
    load_results,
    self_effects,
    sweep_self,
)
from emoneuron.rundir import RunDir

# Config keys that may differ between compared runs without changing what is measured.
NOT_SETTINGS = frozenset({"model", "device", "threads", "batch_size"})
RANGE_DEPTH = {"bottom": (0.0, 1 / 3), "middle": (1 / 3, 2 / 3), "top": (2 / 3, 1.0),
               "all": (0.0, 1.0)}
DEPTH_TENTH = 0.1
DISTANCE = "1-D Wasserstein distance between relative depths (layer / n_layers)"
POOLED = "all"  # the six emotions' neurons together
# The per-emotion statistics followed across model sizes, with the columns of their interval.
TREND_STATISTICS = {"n_neurons": None, "share_of_neurons": None,
                    "mean_relative_depth": ("mean_relative_depth_ci_low",
                                            "mean_relative_depth_ci_high"),
                    "baseline": ("baseline_ci_low", "baseline_ci_high"),
                    "baseline_extra": ("baseline_extra_ci_low", "baseline_extra_ci_high")}


@dataclass(frozen=True)
class ComparedRun:
    """One run directory as the comparison sees it."""

    label: str
    directory: Path
    run: RunResults
    counts: npt.NDArray[np.int_]  # selected neurons per (emotion, layer)
    effects: list[SelfEffect]
    sweep: pd.DataFrame | None  # self-evaluated sweep rows with their drop

    @property
    def n_layers(self) -> int:
        return int(self.counts.shape[1])

    @property
    def n_neurons(self) -> int:
        return int(self.run.manifest["model"]["n_neurons"])

    @property
    def parameters(self) -> float:
        """The model's parameter count from the manifest (NaN for a run written before it was
        recorded)."""
        return float(self.run.manifest["model"].get("parameters", float("nan")))

    @property
    def family(self) -> str:
        return str(self.run.manifest["model"].get("family", ""))

    def depth_bootstrap(self, emotion: str) -> dict[str, Any]:
        """The emotion's mean relative depth with its bootstrap interval and replicates, from
        stability.json ({} when the run has none, e.g. an AUROC selection)."""
        if self.run.stability is None:
            return {}
        return dict(self.run.stability["emotions"][emotion].get("mean_relative_depth", {}))

    def depths(self, emotion: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Relative depth of each layer and the emotion's neuron count there (for POOLED, the
        six emotions' neurons together)."""
        row = (self.counts.sum(axis=0) if emotion == POOLED
               else self.counts[EMOTIONS.index(emotion)])
        return np.arange(self.n_layers) / self.n_layers, row.astype(float)


def _load_one(directory: Path) -> tuple[RunResults, npt.NDArray[np.int_], list[SelfEffect],
                                         pd.DataFrame | None]:
    run = load_results(RunDir(directory))
    try:
        return run, layer_counts(run.neurons), self_effects(run), sweep_self(run)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise UserError(f"{directory}: unreadable run directory ({type(error).__name__}: "
                        f"{error}); re-run `emoneuron run --out {directory}` or remove it "
                        "from the comparison") from error


def load_runs(directories: Sequence[str | Path]) -> list[ComparedRun]:
    """Read and check the run directories; labels are model names, made unique when needed."""
    paths = [Path(d) for d in directories]
    if len(paths) < 2:
        raise UserError(f"compare needs at least two run directories, got {len(paths)}"
                        f"{': ' + str(paths[0]) if paths else ''}; pass one per model")
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise UserError(f"{path}: given twice; pass each run directory once")
        seen.add(path.resolve())
    loaded = [(path, *_load_one(path)) for path in paths]
    # A local model directory's name, not its whole path.
    names = [Path(str(run.manifest["model"]["name"])).name for _, run, *_ in loaded]
    labels = [name if names.count(name) == 1 else f"{name} ({path.name})"
              for name, (path, *_) in zip(names, loaded, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{k + 1}" for k, label in enumerate(labels)]
    return [ComparedRun(label, path, run, counts, effects, sweep)
            for label, (path, run, counts, effects, sweep) in zip(labels, loaded, strict=True)]


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def differences(runs: Sequence[ComparedRun]) -> dict[str, list[str]]:
    """What differs between runs besides the model: data (by hash), settings, version.

    Key -> one value per run, in run order; empty when the runs are comparable.
    """
    values: dict[str, list[str]] = {
        "data hash": [str(r.run.manifest["data"]["hash"]) for r in runs],
        "emoneuron version": [str(r.run.manifest["emoneuron_version"]) for r in runs],
    }
    settings = [flat_settings(r.run.manifest["config"]) for r in runs]
    for key in sorted({k for s in settings for k in s} - NOT_SETTINGS):
        values[f"setting {key}"] = [_as_text(s.get(key, "(absent)")) for s in settings]
    return {key: v for key, v in values.items() if len(set(v)) > 1}


def wasserstein_1d(a_positions: npt.ArrayLike, a_weights: npt.ArrayLike,
                   b_positions: npt.ArrayLike, b_weights: npt.ArrayLike) -> float:
    """1-D Wasserstein (earth mover's) distance between two weighted point sets: the area
    between their cumulative distribution functions. NaN when either has no mass."""
    a_pos, a_w = np.asarray(a_positions, float), np.asarray(a_weights, float)
    b_pos, b_w = np.asarray(b_positions, float), np.asarray(b_weights, float)
    if a_w.sum() <= 0 or b_w.sum() <= 0:
        return float("nan")
    support = np.union1d(a_pos, b_pos)

    def cdf(positions: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]
            ) -> npt.NDArray[np.float64]:
        order = np.argsort(positions)
        cumulative = np.concatenate([[0.0], np.cumsum(weights[order]) / weights.sum()])
        return cumulative[np.searchsorted(positions[order], support, side="right")]

    gaps = np.abs(cdf(a_pos, a_w) - cdf(b_pos, b_w))[:-1]
    return float(np.sum(gaps * np.diff(support)))


def _mean_depth(positions: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    return float(positions @ weights / weights.sum()) if weights.sum() else float("nan")


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)


def synthetic_baselines(run: ComparedRun) -> pd.DataFrame:
    """The run's baseline on its own evaluation split: per emotion (from ablation.csv) and all
    six together (overall, with its Wilson interval, and balanced: the mean of the six)."""
    rows = run.run.ablation[run.run.ablation["condition"] == "baseline"]
    per = pd.DataFrame({"emotion": rows["eval_emotion"], "n": rows["n"],
                        "correct": np.round(rows["accuracy"] * rows["n"]).astype(int),
                        "accuracy": rows["accuracy"], "ci_low": rows["ci_low"],
                        "ci_high": rows["ci_high"]})
    return pd.concat([per, pd.DataFrame(summary_rows(per))], ignore_index=True)


def _baseline_columns(table: pd.DataFrame | None, emotion: str, prefix: str,
                      extra: tuple[str, ...] = ()) -> dict[str, float]:
    """One emotion's accuracy, interval and n from a baseline table, as ``prefix_*`` columns."""
    columns = ("accuracy", "ci_low", "ci_high", "n", *extra)
    names = [prefix if c == "accuracy" else f"{prefix}_{c}" for c in columns]
    found = None if table is None else table[table["emotion"] == emotion]
    if found is None or found.empty:
        return dict.fromkeys(names, float("nan"))
    return {name: float(found[c].iloc[0]) for name, c in zip(names, columns, strict=True)}


def per_emotion_table(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """``compare.csv``: one row per run x emotion."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        synthetic = synthetic_baselines(run)
        effects = {e.emotion: e for e in run.effects}
        diagonal = run.run.effects[run.run.effects["masked_emotion"]
                                   == run.run.effects["eval_emotion"]].set_index("masked_emotion")
        for emotion in EMOTIONS:
            positions, weights = run.depths(emotion)
            third = np.floor(positions * 3)
            n = int(weights.sum())
            depth = run.depth_bootstrap(emotion)
            row: dict[str, Any] = {
                "run": run.label, "model": run.run.manifest["model"]["name"],
                "parameters": run.parameters, "n_layers": run.n_layers, "emotion": emotion,
                "n_neurons": n, "share_of_neurons": n / run.n_neurons,
                "mean_relative_depth": _mean_depth(positions, weights),
                "mean_relative_depth_ci_low": _nan_if_none(depth.get("ci_low")),
                "mean_relative_depth_ci_high": _nan_if_none(depth.get("ci_high")),
                **_baseline_columns(synthetic, emotion, "baseline"),
                **_baseline_columns(run.run.baseline_extra, emotion, "baseline_extra",
                                    ("available",))}
            for t, name in enumerate(LAYER_RANGES[:3]):
                row[f"share_{name}"] = weights[third == t].sum() / n if n else float("nan")
            if emotion in effects:
                effect, d = effects[emotion], diagonal.loc[emotion]
                row |= {"masked": effect.masked[0],
                        "control": effect.control[0], "mask_drop": float(d["mask_drop"]),
                        "control_drop": float(d["control_drop"]),
                        "excess_drop": effect.excess[0], "excess_ci_low": effect.excess[1],
                        "excess_ci_high": effect.excess[2], "p_value": effect.p_value,
                        "verdict": effect.verdict, "beyond": effect.beyond}
            rows.append(row)
    return pd.DataFrame(rows)


def distance_table(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """Per emotion (and all six pooled, emotion ``all``) and every pair of runs, the
    Wasserstein distance between relative depths."""
    rows = []
    for a, b in itertools.combinations(runs, 2):
        for emotion in (*EMOTIONS, POOLED):
            depths_a, depths_b = a.depths(emotion), b.depths(emotion)
            rows.append({"emotion": emotion, "run_a": a.label, "run_b": b.label,
                         "wasserstein": wasserstein_1d(*depths_a, *depths_b),
                         "mean_depth_a": _mean_depth(*depths_a),
                         "mean_depth_b": _mean_depth(*depths_b)})
    return pd.DataFrame(rows)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN below three finite pairs or
    when either side is constant.

    >>> spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.9])
    0.8
    """
    frame = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)}).dropna()
    ranks = frame.rank()
    if len(frame) < 3 or ranks["x"].nunique() < 2 or ranks["y"].nunique() < 2:
        return float("nan")
    return round(float(np.corrcoef(ranks["x"], ranks["y"])[0, 1]), 6)


def _slope(log_parameters: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> float:
    """Least-squares change of ``values`` per tenfold more parameters."""
    finite = np.isfinite(log_parameters) & np.isfinite(values)
    if len(np.unique(log_parameters[finite])) < 2:
        return float("nan")
    return float(np.polyfit(log_parameters[finite], values[finite], 1)[0])


def family_pairs(runs: Sequence[ComparedRun]) -> list[tuple[ComparedRun, ComparedRun]]:
    """Per model family with runs of different sizes, its smallest and largest run."""
    pairs = []
    for family in dict.fromkeys(r.family for r in runs):
        sized = sorted((r for r in runs if r.family == family and np.isfinite(r.parameters)),
                       key=lambda r: r.parameters)
        if len(sized) >= 2 and sized[0].parameters < sized[-1].parameters:
            pairs.append((sized[0], sized[-1]))
    return pairs


def _depth_difference(small: ComparedRun, large: ComparedRun, emotion: str) -> Interval:
    """Large minus small mean relative depth, with the percentile interval of the differences
    of the two runs' independent bootstrap replicates, taken in order."""
    before, after = small.depth_bootstrap(emotion), large.depth_bootstrap(emotion)
    estimate = _nan_if_none(after.get("estimate")) - _nan_if_none(before.get("estimate"))
    differences = [b - a for a, b in zip(before.get("resamples", []),
                                         after.get("resamples", []), strict=False)
                   if a is not None and b is not None]
    if not differences:
        return Interval(estimate, float("nan"), float("nan"))
    low, high = np.quantile(differences, [0.025, 0.975])
    return Interval(estimate, float(low), float(high))


def _pair_difference(frame: pd.DataFrame, small: ComparedRun, large: ComparedRun,
                     emotion: str, statistic: str) -> Interval:
    if statistic == "mean_relative_depth":
        return _depth_difference(small, large, emotion)

    def value(run: ComparedRun) -> Interval:
        row = frame[(frame["run"] == run.label) & (frame["emotion"] == emotion)].iloc[0]
        bounds = TREND_STATISTICS[statistic]
        return Interval(float(row[statistic]), *((float(row[bounds[0]]), float(row[bounds[1]]))
                                                 if bounds else (np.nan, np.nan)))

    first, second = value(small), value(large)
    if TREND_STATISTICS[statistic] and np.isfinite([first.low, second.low]).all():
        return newcombe_interval(first, second)
    return Interval(second.estimate - first.estimate, float("nan"), float("nan"))


def size_trend(runs: Sequence[ComparedRun], frame: pd.DataFrame) -> pd.DataFrame:
    """Per emotion and statistic of ``frame``: each run's value in parameter order, the change
    within each family pair (larger minus smaller, with its interval), and across all runs the
    Spearman correlation with log parameter count and the slope per tenfold parameters."""
    by_size = sorted(runs, key=lambda r: r.parameters)
    log_parameters = np.log10([r.parameters for r in by_size])
    pairs = family_pairs(runs)
    rows = []
    for emotion in EMOTIONS:
        for statistic in TREND_STATISTICS:
            values = np.array([float(frame[(frame["run"] == r.label)
                                           & (frame["emotion"] == emotion)][statistic].iloc[0])
                               for r in by_size])
            row: dict[str, Any] = {
                "emotion": emotion, "statistic": statistic,
                "values_by_size": "; ".join(f"{r.label} {_number(v, 4)}"
                                            for r, v in zip(by_size, values, strict=True)),
                "n_models": int(np.isfinite(values).sum()),
                "spearman_log_parameters": spearman(log_parameters, values),
                "slope_per_tenfold_parameters": _slope(log_parameters, values)}
            if not pairs:
                rows.append(row | {"pair": "", "pair_change": np.nan, "pair_ci_low": np.nan,
                                   "pair_ci_high": np.nan})
            for small, large in pairs:
                change = _pair_difference(frame, small, large, emotion, statistic)
                rows.append(row | {"pair": f"{small.label} -> {large.label}",
                                   "pair_change": change.estimate, "pair_ci_low": change.low,
                                   "pair_ci_high": change.high})
    return pd.DataFrame(rows)


def sweep_by_depth(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """Every run's self-evaluated sweep rows with the relative depth range they masked."""
    frames = []
    for run in runs:
        if run.sweep is None:
            continue
        rows = run.sweep[["masked_emotion", "layer_range", "proportion", "n_masked", "accuracy",
                          "drop"]].copy()
        rows.insert(0, "run", run.label)
        rows["depth_from"] = rows["layer_range"].map(lambda r: RANGE_DEPTH[r][0])
        rows["depth_to"] = rows["layer_range"].map(lambda r: RANGE_DEPTH[r][1])
        frames.append(rows)
    columns = ["run", "masked_emotion", "layer_range", "proportion", "n_masked", "accuracy",
               "drop", "depth_from", "depth_to"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _bar_hover(ax: Any, x: float, width: float, value: float, text: str) -> None:
    hover(ax, (x - width / 2, min(0.0, value), x + width / 2, max(0.0, value)), text)


def _fig_share(runs: Sequence[ComparedRun], frame: pd.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
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
    fig, ax = plt.subplots(figsize=(11, 4.2), layout="constrained")
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
                     f"{_fmt(_mean_depth(positions, weights), lambda v: f'{v:.2f}')}.")
    for (a, b), pairs in distances.groupby(["run_a", "run_b"], sort=False):
        finite = pairs[pairs["emotion"] != POOLED].dropna(subset=["wasserstein"])
        listed = ", ".join(f"{e} {_number(w, 2)}" for e, w in
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


def _number(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) and np.isfinite(value) else (
        "n/a" if isinstance(value, float) else str(value))


def _depth_with_ci(row: Any) -> str:
    value = _number(row.mean_relative_depth, 2)
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
             _number(row.spearman_log_parameters, 2), _number(row.slope_per_tenfold_parameters,
                                                              4),
             row.pair or "no family at two sizes",
             _number(row.pair_change, 4) + ("" if not np.isfinite(row.pair_ci_low) else
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
            _number(row.p_value), row.verdict) if hasattr(row, "verdict")
           and isinstance(row.verdict, str) else ("n/a",) * 5)]
        for row in frame.itertuples()]
    distance_rows = [[row.emotion, row.run_a, row.run_b, _number(row.wasserstein),
                      _number(row.mean_depth_a, 2), _number(row.mean_depth_b, 2)]
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
        for suffix in (".png", ".svg"):  # no stale figure of an earlier comparison
            (out / FIGURES / f"sweep{suffix}").unlink(missing_ok=True)
        html += '<p class="note">No run has a sweep, so its figure is omitted.</p>'
    return html


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Compare run directories into ``out``: ``compare.html``, ``compare.csv`` (one row per run
    x emotion), ``distances.csv`` (every pair of runs, per emotion and pooled),
    ``size_trend.csv`` (:func:`size_trend`), ``compare.json`` (runs, differences, distances,
    sweep by relative depth, size trend, baselines) and ``figures/*.png|svg``. Return the HTML
    path."""
    out_dir = Path(out)
    runs = load_runs(run_dirs)
    diffs = differences(runs)
    frame = per_emotion_table(runs)
    distances = distance_table(runs)
    sweep = sweep_by_depth(runs)
    trend = size_trend(runs, frame)
    write_csv(out_dir / "compare.csv", frame)
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
        Section("tables", "Tables", _tables(runs, frame, distances, sweep, trend)),
    ])
    path = out_dir / "compare.html"
    with atomic_open(path) as handle:
        handle.write(html)
    return path
