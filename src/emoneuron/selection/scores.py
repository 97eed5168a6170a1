"""Per-neuron selectivity statistics, all computed from one recording's additive statistics.

Each statistic gives a score per (emotion, layer, neuron), higher meaning more specific to that
emotion, and one score per neuron for rankings across emotions (:class:`Scores`):

``lape`` (Tang et al. 2024, "Language-Specific Neurons", ACL 2024)
    P(active | e), normalised across emotions into a distribution q; per neuron 1 - H(q)/log 6
    (a monotone transform of their entropy, with 0 log 0 = 0). As in their code, a neuron is
    eligible only when some emotion's P(active | e) is strictly above the activity bar: the
    ``round(activity_quantile * n)``-th smallest of all n probabilities (:func:`activity_bar`).
    Per emotion: q_e. Tang et al. threshold ``act(gate) > 0``: record at ``mlp.activation``.
``frequency``
    P(active | e) - P(active | not e): the difference in activation frequency, one-vs-rest.
``smd``
    One-vs-rest standardised mean difference of the activation (Cohen's d, pooled variance).
``welch``
    One-vs-rest Welch's t of the activation, from counts, sums and sums of squares. Tokens of a
    dialogue are not independent, so read it as a ranking score, not as a p-value.
``auroc``
    P(activation of a token of e > activation of a token of another emotion), from the
    per-emotion histograms; ties within a bin count one half. The bins are fixed
    (:func:`emoneuron.recording.statistics.bin_edges`): the error against the exact AUROC is at most
    half the probability that a token of e and one of the rest fall into the same bin.

``attribution``
    Not a selectivity statistic but a causal estimate, from an attribution pass
    (:mod:`emoneuron.causal.experiments.attribution`,
    :class:`~emoneuron.recording.attribution_stats.AttributionStats`): the mean gradient x
    activation per dialogue of e, i.e. how much, to first order, zeroing the neuron lowers the
    log-probability of the right label on e's dialogues.
``attribution-specific``
    The same minus the mean of the other emotions' means: support for e's right answer beyond
    the support for every right answer.

``direction-projection`` (Wang et al. 2025, "Do LLMs 'Feel'? Emotion Circuits Discovery and
Control")
    The neuron's mean activation on e's dialogues times what it writes along e's residual-stream
    direction per unit of activation
    (:func:`emoneuron.causal.experiments.directions.direction_writes`): how much, on average per
    token, it pushes the residual stream towards e. It reads :class:`ProjectedStats`: the recording
    and those writes, which need the directions and the model's down projection (a run computes them
    before selecting with it).

Overall score: the LAPE selectivity for ``lape``, the largest per-emotion score otherwise.

Each statistic is one entry of :data:`emoneuron.selection.config.STATISTICS`, which names the
function here that scores it: ``(inputs, activity_quantile) -> Scores``, the inputs being what
the entry reads (:data:`READS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.models.config import DEFAULT_SITE
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.config import statistic_entry, statistics_reading

# Read from the registry (emoneuron.selection.config.STATISTICS), never listed here.
STATISTICS = statistics_reading("recording")
ATTRIBUTION_STATISTICS = statistics_reading("attribution")


@dataclass(frozen=True)
class Scores:
    per_emotion: torch.Tensor  # (E, L, W); -inf where a neuron is ineligible
    overall: torch.Tensor  # (L, W); -inf where a neuron is ineligible

    @classmethod
    def of(cls, per_emotion: torch.Tensor) -> Scores:
        """Per-emotion scores with the largest of them as each neuron's overall score."""
        return cls(per_emotion=per_emotion, overall=per_emotion.max(0).values)


@dataclass(frozen=True)
class ProjectedStats:
    """What ``direction-projection`` reads: a recording's statistics at the down projection's
    input and ``writes`` (E, L, W), each neuron's down-projection column projected on each
    emotion's unit direction (:func:`emoneuron.causal.experiments.directions.direction_writes`).
    Model-free, so selection reads it as it reads a recording."""

    stats: ActivationStats
    writes: torch.Tensor

    @property
    def site(self) -> str:
        return self.stats.site

    @property
    def n_layers(self) -> int:
        return self.stats.n_layers

    @property
    def width(self) -> int:
        return self.stats.width


SelectionInputs = ActivationStats | AttributionStats | ProjectedStats
READS: dict[str, type] = {"recording": ActivationStats, "attribution": AttributionStats,
                          "directions": ProjectedStats}


def entropy_selectivity(stats: ActivationStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised activation probabilities (E, L, W) and 1 - H/log(E) per neuron (L, W).

    A neuron that never fires has no distribution over emotions: selectivity 0, not 1."""
    probability = stats.probability()
    total = probability.sum(0, keepdim=True)
    normalised = probability / total.clamp(min=1e-12)
    entropy = -(normalised * normalised.clamp(min=1e-12).log()).sum(0)
    selectivity = 1 - entropy / math.log(len(EMOTIONS))
    return normalised, torch.where(total[0] > 0, selectivity, torch.zeros_like(selectivity))


@dataclass(frozen=True)
class _OneVsRest:
    count: torch.Tensor
    rest_count: torch.Tensor
    mean: torch.Tensor
    rest_mean: torch.Tensor
    var: torch.Tensor  # population variances
    rest_var: torch.Tensor


def _one_vs_rest(stats: ActivationStats) -> _OneVsRest:
    count = stats.tokens.view(-1, 1, 1).clamp(min=1)
    rest_count = (stats.tokens.sum() - stats.tokens).view(-1, 1, 1).clamp(min=1)
    mean = stats.sum / count
    rest_mean = (stats.sum.sum(0, keepdim=True) - stats.sum) / rest_count
    var = (stats.sum_sq / count - mean.square()).clamp(min=0)
    rest_var = ((stats.sum_sq.sum(0, keepdim=True) - stats.sum_sq) / rest_count
                - rest_mean.square()).clamp(min=0)
    return _OneVsRest(count, rest_count, mean, rest_mean, var, rest_var)


def standardised_mean_difference(stats: ActivationStats, _activity_quantile: float = 0.95
                                 ) -> torch.Tensor:
    """One-vs-rest Cohen's d per emotion, shape (E, L, W)."""
    s = _one_vs_rest(stats)
    pooled = ((s.count * s.var + s.rest_count * s.rest_var) / (s.count + s.rest_count)).sqrt()
    return (s.mean - s.rest_mean) / pooled.clamp(min=1e-8)


def welch_t(stats: ActivationStats, _activity_quantile: float = 0.95
            ) -> torch.Tensor:
    """One-vs-rest Welch's t per emotion, shape (E, L, W), with unbiased variances."""
    s = _one_vs_rest(stats)
    var = s.var * s.count / (s.count - 1).clamp(min=1)
    rest_var = s.rest_var * s.rest_count / (s.rest_count - 1).clamp(min=1)
    error = (var / s.count + rest_var / s.rest_count).sqrt()
    return (s.mean - s.rest_mean) / error.clamp(min=1e-12)


def frequency_difference(stats: ActivationStats, _activity_quantile: float = 0.95
                         ) -> torch.Tensor:
    """P(active | e) - P(active | not e), shape (E, L, W)."""
    rest_tokens = (stats.tokens.sum() - stats.tokens).clamp(min=1).view(-1, 1, 1)
    rest = (stats.active.sum(0, keepdim=True) - stats.active) / rest_tokens
    return stats.probability() - rest


def auroc(stats: ActivationStats, _activity_quantile: float = 0.95
          ) -> torch.Tensor:
    """One-vs-rest AUROC per emotion from the histograms, shape (E, L, W); 0.5 where one side
    has no tokens."""
    if stats.histogram is None:
        raise UserError("AUROC needs the per-emotion histograms of a recording; these "
                        "statistics have none (a bootstrap resample or a format-1 file)")
    positive = stats.histogram.to(torch.float64)
    negative = positive.sum(0, keepdim=True) - positive
    below = negative.cumsum(-1) - negative
    wins = (positive * (below + 0.5 * negative)).sum(-1)
    pairs = positive.sum(-1) * negative.sum(-1)
    return torch.where(pairs > 0, wins / pairs.clamp(min=1), torch.full_like(wins, 0.5))


def activity_bar(probability: torch.Tensor, activity_quantile: float) -> torch.Tensor:
    """Tang et al.'s bar: the ``round(activity_quantile * n)``-th smallest of the n activation
    probabilities (the smallest when that rounds to 0)."""
    if not 0 <= activity_quantile < 1:
        raise UserError(f"activity quantile {activity_quantile} must be in [0, 1), e.g. 0.95")
    flat = probability.flatten()
    return flat.kthvalue(max(1, round(activity_quantile * flat.numel()))).values


def attribution_scores(stats: AttributionStats, specific: bool) -> Scores:
    """Per emotion, the mean attribution per dialogue of that emotion, minus (``specific``)
    the mean of the other emotions' means; overall, the largest per-emotion score."""
    mean = stats.mean_per_dialogue()
    if specific:
        mean = mean - (mean.sum(0, keepdim=True) - mean) / (len(EMOTIONS) - 1)
    return Scores.of(mean)


def direction_projection(inputs: ProjectedStats, _activity_quantile: float = 0.95) -> Scores:
    """Per emotion, each neuron's mean activation over e's counted tokens times its write
    along e's unit direction (``inputs.writes``); overall, the largest. Only the down
    projection's input is what the column multiplies.

    >>> stats = ActivationStats.zeros(1, 2, "mlp.down_proj.input", "dialogue")
    >>> stats.tokens[:] = 4.0
    >>> stats.sum[0, 0] = torch.tensor([2.0, -8.0])  # anger: mean activations 0.5 and -2
    >>> writes = torch.zeros(6, 1, 2, dtype=torch.float64)
    >>> writes[0, 0] = torch.tensor([3.0, 1.0])
    >>> direction_projection(ProjectedStats(stats, writes)).per_emotion[0, 0].tolist()
    [1.5, -2.0]
    """
    stats, writes = inputs.stats, inputs.writes
    if stats.site != DEFAULT_SITE:
        raise UserError(f"direction-projection multiplies the down projection's input "
                        f"({DEFAULT_SITE}) by its columns; these statistics were recorded at "
                        f"{stats.site}")
    if tuple(writes.shape) != tuple(stats.sum.shape):
        raise UserError(f"writes of shape {tuple(writes.shape)} for statistics of shape "
                        f"{tuple(stats.sum.shape)}: were they computed on another model?")
    mean = stats.sum / stats.tokens.clamp(min=1).view(-1, 1, 1)
    return Scores.of(mean * writes.to(mean.dtype))


def lape_scores(stats: ActivationStats, activity_quantile: float) -> Scores:
    """Per emotion the normalised activation probability, overall the entropy selectivity;
    -inf where no emotion's probability is above the activity bar."""
    probability = stats.probability()
    eligible = probability.max(0).values > activity_bar(probability, activity_quantile)
    normalised, selectivity = entropy_selectivity(stats)
    return Scores(per_emotion=normalised.masked_fill(~eligible, -math.inf),
                  overall=selectivity.masked_fill(~eligible, -math.inf))


def attribution_mean(stats: AttributionStats, _activity_quantile: float) -> Scores:
    return attribution_scores(stats, specific=False)


def attribution_specific(stats: AttributionStats, _activity_quantile: float) -> Scores:
    return attribution_scores(stats, specific=True)


def compute_scores(stats: SelectionInputs, statistic: str,
                   activity_quantile: float = 0.95) -> Scores:
    """The registered ``statistic``'s scores of ``stats``, which must be what it reads.

    >>> stats = ActivationStats.zeros(2, 3, "mlp.down_proj.input", "dialogue")
    >>> compute_scores(stats, "smd").per_emotion.shape
    torch.Size([6, 2, 3])
    """
    entry = statistic_entry(statistic)
    if not isinstance(stats, READS[entry.reads]):
        raise UserError(f"statistic {statistic!r} needs " + {
            "recording": "a recording's activation statistics, not attributions",
            "attribution": "an attribution pass's statistics "
                           "(emoneuron.causal.experiments.attribution)",
            "directions": "a recording with the emotion directions' writes (ProjectedStats)",
        }[entry.reads] + f", not {type(stats).__name__}")
    # Every scorer takes (inputs, activity_quantile); only lape's reads the quantile.
    scorer: Callable[[Any, float], Any] = globals()[entry.scorer]
    scores = scorer(stats, activity_quantile)
    # A contrast gives per-emotion scores only; its overall score is their largest.
    return scores if isinstance(scores, Scores) else Scores.of(scores)
