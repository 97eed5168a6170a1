"""The comparison of runs of different models, as numbers: how many emotion neurons, where in
the depth of the model, what removing them does, and which depth range matters in the sweep
(the tables of ``compare.csv``, ``distances.csv``, ``size_trend.csv`` and ``compare.json``;
:mod:`emoneuron.reporting.comparison_page` draws them as ``compare.html``).

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

Which unit carries each emotion (:func:`units_table`, ``compare_units.csv``): every run's
``units.csv`` (its neuron sets beside its emotion directions, each against its own random null,
:mod:`emoneuron.causal.inference.units`) with the run's label, as each run's tables wrote them.

Only run directories are read (``manifest.json``, ``neurons.json``, ``ablation.csv``,
``effects.csv`` and, when present, ``sweep.csv``, ``stability.json``,
``baseline_extra.csv`` and ``units.csv``); nothing is recomputed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from emoneuron.causal.config import LAYER_RANGES
from emoneuron.causal.inference.significance import Interval, newcombe_interval
from emoneuron.causal.inference.summaries import summary_rows
from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.options import flat_settings
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


def mean_depth(positions: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    """The weighted mean relative depth (NaN without weight)."""
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
                "mean_relative_depth": mean_depth(positions, weights),
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
                         "mean_depth_a": mean_depth(*depths_a),
                         "mean_depth_b": mean_depth(*depths_b)})
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
                "values_by_size": "; ".join(f"{r.label} {fixed(v, 4)}"
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


def units_table(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """``compare_units.csv``: each run's ``units.csv`` rows after a ``run`` column (its
    label); runs without one (no probe, or written before it) add nothing."""
    frames = [r.run.units.assign(run=r.label) for r in runs if r.run.units is not None]
    if not frames:
        return pd.DataFrame(columns=["run"])
    table = pd.concat(frames, ignore_index=True)
    return table[["run", *(c for c in table.columns if c != "run")]]


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



def fixed(value: object, digits: int = 3) -> str:
    """A float with ``digits`` decimals ("n/a" when it is not finite); anything else as text.

    >>> fixed(0.12345, 2), fixed(float("nan")), fixed("lape")
    ('0.12', 'n/a', 'lape')
    """
    return f"{value:.{digits}f}" if isinstance(value, float) and np.isfinite(value) else (
        "n/a" if isinstance(value, float) else str(value))
