"""Coverage of the bootstrap interval of a neuron set's mean relative depth, on simulated
populations whose answer is known.

    .venv/bin/python bench/depth_coverage.py [--replications 200] [--settings weak-20 ...]

A population: 12 layers x 512 neurons and six emotions; each neuron has an exact
P(active | emotion). Background neurons (every depth alike) fire at a rate that varies a little
between emotions; 40 planted neurons per emotion, almost all in the upper half of the layers,
fire more often for their emotion, by a log-odds lift drawn from [0.2, 1.5] (``weak``) or
[0.2, 2.5] (``strong``). The truth is the set LAPE (the default selection method) picks from
these exact probabilities, and its mean relative depth.

A replication draws a population of its own, then each emotion's dialogues (10-40 counted tokens
each; every dialogue shifts each neuron's log-odds by its own normal effect, so a dialogue's
tokens are correlated), sums them into groups by the recorder's own hash of the dialogue id,
builds a ``Recording`` and runs :func:`emoneuron.selection.stability.stability` on it. Per
emotion: whether the interval ``stability`` reports covers the true depth, and, from the same
replicates, whether the bias-corrected percentile and the basic (reverse percentile) interval
do. Coverage is pooled over replications and emotions, with the Wilson interval over those
trials, widened by the design effect where the emotions of one replication vary together.
Printed: one Markdown table, one row per setting.

One replication of ``weak-20`` takes about 0.3 s on one core, of a ``-b200`` setting 0.7 s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import torch

from emoneuron.causal.inference.significance import wilson_bounds
from emoneuron.data.schema import EMOTIONS
from emoneuron.recording.statistics import N_BINS, ActivationStats, Recording, dialogue_group
from emoneuron.selection.config import SELECTION_METHODS, IdentifyConfig, StabilityConfig
from emoneuron.selection.identify import membership
from emoneuron.selection.stability import relative_depths, stability

LAYERS, WIDTH = 12, 512
PLANTED = 40  # per emotion
DIALOGUE_EFFECT = 1.0  # standard deviation of a dialogue's shift of a neuron's log-odds
TOKENS = (10, 40)  # counted tokens per dialogue, uniform
LEVEL = 0.95
Interval = tuple[float, float]


@dataclass(frozen=True)
class Setting:
    """A population's signal and how much data a replication draws from it."""

    lift: float  # planted neurons' log-odds lift for their emotion: uniform in [0.2, lift]
    dialogues: int  # per emotion
    groups: int
    resamples: int


SETTINGS = {
    "weak-20": Setting(1.5, 20, 16, 50),
    "weak-20-b200": Setting(1.5, 20, 16, 200),
    "weak-20-g32": Setting(1.5, 20, 32, 50),
    "weak-60": Setting(1.5, 60, 16, 50),
    "strong-20": Setting(2.5, 20, 16, 50),
    "strong-20-b200": Setting(2.5, 20, 16, 200),
    "strong-60": Setting(2.5, 60, 16, 50),
}


def population(lift: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Exact P(active | emotion), (E, L, W)."""
    base = rng.normal(-2.2, 1.0, (LAYERS, WIDTH))
    logit = base[None] + rng.normal(0.0, 0.3, (len(EMOTIONS), LAYERS, WIDTH))
    # Real models' sets lie mostly in the upper half of the layers (docs/methods.md).
    layer_weight = np.where(np.arange(LAYERS) >= LAYERS // 2, 1.0, 0.05)
    free = np.ones((LAYERS, WIDTH), dtype=bool)
    for e in range(len(EMOTIONS)):
        for layer in rng.choice(LAYERS, PLANTED, p=layer_weight / layer_weight.sum()):
            index = rng.choice(np.flatnonzero(free[layer]))
            free[layer, index] = False
            logit[:, layer, index] = rng.normal(-1.3, 0.5) + rng.normal(0.0, 0.3, len(EMOTIONS))
            logit[e, layer, index] += rng.uniform(0.2, lift)
    probability: npt.NDArray[np.float64] = 1 / (1 + np.exp(-logit))
    return probability


def true_depths(probability: npt.NDArray[np.float64], config: IdentifyConfig
                ) -> list[float | None]:
    """Each emotion's set's mean relative depth selected from the exact probabilities."""
    zeros = torch.zeros(probability.shape, dtype=torch.float64)
    exact = ActivationStats(tokens=torch.ones(len(EMOTIONS), dtype=torch.float64),
                            active=torch.from_numpy(probability), sum=zeros, sum_sq=zeros)
    return relative_depths(membership(exact, config)[0].flatten(1), LAYERS)


def simulated_recording(probability: npt.NDArray[np.float64], setting: Setting,
                        rng: np.random.Generator, replication: int) -> Recording:
    """One sample of dialogues summed into groups as the recorder sums them."""
    shape = (len(EMOTIONS), setting.groups, LAYERS, WIDTH)
    tokens = np.zeros(shape[:2])
    active = np.zeros(shape)
    logit = np.log(probability / (1 - probability))
    for e in range(len(EMOTIONS)):
        counted = rng.integers(TOKENS[0], TOKENS[1] + 1, setting.dialogues)
        shifted = logit[e] + rng.normal(0.0, DIALOGUE_EFFECT, (setting.dialogues, LAYERS, WIDTH))
        fired = rng.binomial(counted[:, None, None], 1 / (1 + np.exp(-shifted)))
        for d in range(setting.dialogues):
            group = dialogue_group(f"{replication}:{EMOTIONS[e]}:{d}", setting.groups,
                                   seed=0)
            tokens[e, group] += counted[d]
            active[e, group] += fired[d]
    # LAPE reads the active counts only; the moments and histograms are placeholders.
    moments = torch.from_numpy(active)
    return Recording(tokens=torch.from_numpy(tokens), active=moments, sum=moments,
                     sum_sq=moments, histogram=torch.zeros((len(EMOTIONS), LAYERS, WIDTH, N_BINS),
                                                           dtype=torch.int32),
                     top_values=torch.full((LAYERS, 1, WIDTH), -torch.inf),
                     top_dialogue=torch.zeros((LAYERS, 1, WIDTH), dtype=torch.int64))


def quantiles(values: Sequence[float], levels: Sequence[float]) -> list[float]:
    """Linearly interpolated quantiles, as :func:`torch.quantile` (and ``stability``) take them."""
    return [float(q) for q in torch.tensor(values, dtype=torch.float64).quantile(
        torch.tensor(levels, dtype=torch.float64))]


def share_below(estimate: float, replicates: Sequence[float]) -> float:
    """Share of replicates below the estimate, ties counted half."""
    below = sum(r < estimate for r in replicates) + 0.5 * sum(r == estimate for r in replicates)
    return below / len(replicates)


def percentile(estimate: float, replicates: Sequence[float]) -> Interval:
    """The 2.5th and 97.5th percentiles, as ``stability`` reports (``estimate`` unused: the
    signature is the alternatives')."""
    low, high = quantiles(replicates, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return low, high


def bias_corrected(estimate: float, replicates: Sequence[float]) -> Interval:
    """Efron's BC interval. With every replicate on one side of the estimate the share below
    would give an infinite z0; it is held 1/(2B) from 0 or 1 instead, which puts the interval
    among that side's largest (or smallest) replicates, wholly on their side of the estimate."""
    edge = 0.5 / len(replicates)
    z0 = NormalDist().inv_cdf(min(max(share_below(estimate, replicates), edge), 1 - edge))
    z = NormalDist().inv_cdf((1 + LEVEL) / 2)
    low, high = quantiles(replicates, [NormalDist().cdf(2 * z0 - z),
                                       NormalDist().cdf(2 * z0 + z)])
    return low, high


def basic(estimate: float, replicates: Sequence[float]) -> Interval:
    """The percentile interval reflected about the estimate."""
    low, high = percentile(estimate, replicates)
    return 2 * estimate - high, 2 * estimate - low


ALTERNATIVES: dict[str, Callable[[float, Sequence[float]], Interval]] = {
    "bias-corrected percentile": bias_corrected, "basic": basic}


@dataclass
class Trial:
    """One emotion of one replication."""

    replication: int
    truth: float
    estimate: float | None
    reported: Interval | None  # the interval stability() reports
    alternatives: dict[str, Interval | None]
    position: float | None  # share of replicates below the estimate
    jaccard: float


def replicate(setting: Setting, config: IdentifyConfig, replication: int, seed: int = 0
              ) -> list[Trial]:
    """A population of its own, its true depths, one sample from it and its bootstrap."""
    rng = np.random.default_rng([seed, replication])
    probability = population(setting.lift, rng)
    recording = simulated_recording(probability, setting, rng, replication)
    report = stability(recording, config, StabilityConfig(setting.resamples, 1, replication),
                       progress=False)
    trials = []
    for emotion, truth in zip(EMOTIONS, true_depths(probability, config), strict=True):
        if truth is None:
            continue
        row = report["emotions"][emotion]
        depth = row["mean_relative_depth"]
        estimate = depth["estimate"]
        found = [d for d in depth["resamples"] if d is not None]
        usable = estimate is not None and bool(found)
        trials.append(Trial(
            replication, truth, estimate,
            (depth["ci_low"], depth["ci_high"]) if depth["ci_low"] is not None else None,
            {name: interval(estimate, found) if usable else None
             for name, interval in ALTERNATIVES.items()},
            share_below(estimate, found) if usable else None,
            row["bootstrap_jaccard_to_full"]["mean"]))
    return trials


def simulate(setting: Setting, replications: int, seed: int = 0,
             config: IdentifyConfig = SELECTION_METHODS["lape"].config) -> list[Trial]:
    return [trial for r in range(replications) for trial in replicate(setting, config, r, seed)]


def covers(interval: Interval | None, truth: float) -> bool:
    return interval is not None and interval[0] <= truth <= interval[1]


def design_effect(hits: Sequence[bool], clusters: Sequence[int]) -> float:
    """Variance of the hit share over clusters (replications), as a ratio estimator, against
    the binomial p(1-p)/n: the emotions of one replication share a population and its
    activity bar, so they may count as fewer independent trials than they are."""
    outcomes, labels = np.asarray(hits, dtype=float), np.asarray(clusters)
    share = float(outcomes.mean())
    ids = np.unique(labels)
    sums = np.array([outcomes[labels == c].sum() for c in ids])
    sizes = np.array([(labels == c).sum() for c in ids])
    spread = float(np.sum((sums - share * sizes) ** 2)) / (len(ids) * (len(ids) - 1)
                                                          * sizes.mean() ** 2)
    binomial = share * (1 - share) / len(outcomes)
    return spread / binomial if binomial > 0 else 1.0


def covered(trials: Sequence[Trial], pick: Callable[[Trial], Interval | None]) -> list[bool]:
    return [covers(pick(t), t.truth) for t in trials]


def coverage(trials: Sequence[Trial], pick: Callable[[Trial], Interval | None]) -> str:
    """Coverage in percent with its Wilson interval over n / design effect trials (an effect
    below 1 is not used to narrow it), and the mean width in depth units."""
    hits = covered(trials, pick)
    effect = design_effect(hits, [t.replication for t in trials])
    share = float(np.mean(hits))
    low, high = wilson_bounds(share, len(hits) / max(1.0, effect), LEVEL)
    widths = [i[1] - i[0] for t in trials if (i := pick(t)) is not None]
    return f"{100 * share:.1f} [{100 * low:.1f}, {100 * high:.1f}] ({np.mean(widths):.3f})"


def reported(trial: Trial) -> Interval | None:
    return trial.reported


def alternative(name: str) -> Callable[[Trial], Interval | None]:
    def pick(trial: Trial) -> Interval | None:
        return trial.alternatives[name]
    return pick


def table_row(name: str, setting: Setting, trials: Sequence[Trial], replications: int) -> str:
    bias = np.mean([t.estimate - t.truth for t in trials if t.estimate is not None])
    positions = [t.position for t in trials if t.position is not None]
    above = np.mean([t.reported is not None and t.truth > t.reported[1] for t in trials])
    cells = [name, str(setting.dialogues), str(setting.groups), str(setting.resamples),
             f"{replications}, {len(trials)}",
             f"{np.mean([t.jaccard for t in trials]):.2f}", f"{bias:+.3f}",
             f"{np.median(positions):.2f}",
             coverage(trials, reported), f"{above:.1%}".replace("%", ""),
             *(coverage(trials, alternative(n)) for n in ALTERNATIVES)]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| setting | dialogues per emotion | groups | resamples | replications, trials "
          "| Jaccard to full | estimate - truth | estimate's position in its replicates "
          "| percentile (reported): coverage % [Wilson 95%] (width) | truth above it % "
          "| bias-corrected percentile | basic |\n|" + "---|" * 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=["weak-20"])
    parser.add_argument("--seed", type=int, default=0, help="population and data seed")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small matrices: threads cost more than they give
    rows = []
    for name in args.settings:
        start = time.perf_counter()
        trials = simulate(SETTINGS[name], args.replications, args.seed)
        rows.append(table_row(name, SETTINGS[name], trials, args.replications))
        effect = design_effect(covered(trials, reported), [t.replication for t in trials])
        print(f"{name}: {time.perf_counter() - start:.0f} s, design effect of the reported "
              f"interval's coverage {effect:.2f}", flush=True)
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
