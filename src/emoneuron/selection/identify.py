"""Select the neurons that fire selectively for one emotion, from recorded statistics alone.

The statistic (one of :data:`emoneuron.selection.config.STATISTICS`, computed by
:mod:`emoneuron.selection.scores`: from a recording, an attribution pass, or a recording and the
emotion directions) scores every neuron; the rule picks neurons by those scores, without
touching the model again:

``global`` (Tang et al.'s)
    the globally highest ``round(share * n)`` of all n neurons by their overall score;
``per-layer``
    the highest ``share`` of each layer's neurons, so every layer contributes equally;
``per-emotion``
    each emotion's ``top_n`` neurons by its own per-emotion score.

Assignment of the kept neurons (``global`` and ``per-layer``):

``lape`` (Tang et al. 2024's rule, from their ``identify.py``)
    a kept neuron belongs to every emotion whose raw P(active | e) is strictly above the
    activity bar (:func:`emoneuron.selection.scores.activity_bar`, the same bar as the eligibility
    filter): to several emotions, or to none;
``argmax`` (this project's)
    each neuron to its single strongest emotion by its per-emotion score (exclusive);
``normalised``
    to every emotion whose normalised activation probability reaches ``normalised_threshold``.

Under ``per-emotion``, ``argmax`` lets a neuron compete only for its strongest emotion's list and
``normalised`` ranks each emotion independently (lists may share neurons); ``lape`` is refused.

:data:`~emoneuron.selection.config.SELECTION_METHODS` names complete selections (site, statistic,
rule, assignment); a new method is one more entry there.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.statistics import ActivationStats, Recording
from emoneuron.selection.config import SELECTION_METHODS as SELECTION_METHODS
from emoneuron.selection.config import IdentifyConfig as IdentifyConfig
from emoneuron.selection.config import SelectionMethod as SelectionMethod
from emoneuron.selection.config import selection_method as selection_method
from emoneuron.selection.neurons import Neuron as Neuron
from emoneuron.selection.neurons import NeuronSets as NeuronSets
from emoneuron.selection.scores import (
    ProjectedStats,
    SelectionInputs,
    activity_bar,
    compute_scores,
    entropy_selectivity,
)


def _activations(stats: ActivationStats | ProjectedStats) -> ActivationStats:
    """The activation statistics a selection's inputs carry (a projection's recording)."""
    return stats.stats if isinstance(stats, ProjectedStats) else stats


def shared_membership(stats: ActivationStats, config: IdentifyConfig) -> torch.Tensor:
    """(E, L, W) bool: the emotions a kept neuron may share, by the config's multi-emotion
    criterion: above the activity bar for ``lape``, the normalised threshold otherwise."""
    if config.assignment == "lape":
        probability = stats.probability()
        return probability > activity_bar(probability, config.activity_quantile)
    return entropy_selectivity(stats)[0] >= config.normalised_threshold


def membership(stats: SelectionInputs, config: IdentifyConfig,
               capped: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Which neurons the rule gives to each emotion, (E, L, W) bool, and their scores (E, L, W).

    ``capped=False`` drops the share / top-n limit and keeps every eligible neuron the rule
    would assign: what the shuffled-label null compares against the real score cut-off."""
    scores = compute_scores(stats, config.statistic, config.activity_quantile)
    n_emotions, n_layers, width = scores.per_emotion.shape
    strongest = torch.nn.functional.one_hot(scores.per_emotion.argmax(0), n_emotions)
    strongest = strongest.permute(2, 0, 1).bool()  # (E, L, W)
    if config.rule == "per-emotion":
        score = scores.per_emotion
        candidates = torch.isfinite(score)
        if config.assignment == "argmax":
            candidates &= strongest
        if not capped:
            return candidates, score
        members = torch.zeros_like(candidates)
        for e in range(n_emotions):
            ranked = score[e].masked_fill(~candidates[e], -torch.inf).flatten()
            top = ranked.topk(min(config.top_n, ranked.numel())).indices
            members[e].view(-1)[top[torch.isfinite(ranked[top])]] = True
        return members, score
    overall = scores.overall
    kept = torch.isfinite(overall)
    if capped and config.rule == "global":
        top = overall.flatten().topk(max(1, round(config.share * overall.numel()))).indices
        chosen = torch.zeros(overall.numel(), dtype=torch.bool)
        chosen[top] = True
        kept &= chosen.view_as(overall)
    elif capped:  # per-layer
        top = overall.topk(max(1, round(config.share * width)), dim=1).indices
        kept &= torch.zeros_like(kept).scatter_(1, top, True)
    if config.assignment == "argmax":
        members = strongest & kept
    elif isinstance(stats, AttributionStats):
        raise UserError(f"assignment {config.assignment} reads activation probabilities, which "
                        "attributions do not have; use --assignment argmax or --rule per-emotion")
    else:
        members = shared_membership(_activations(stats), config) & kept
    return members, overall.expand(n_emotions, n_layers, width)


_EMPTY_BECAUSE = {
    "per-emotion": "no eligible neuron scores for them",
    "argmax": "none of the kept neurons is strongest for them",
    "lape": "no kept neuron's activation probability for them is above the activity bar",
    "normalised": "no kept neuron's normalised probability for them reaches the threshold",
}


def _check_arguments(stats: Any, config: Any, model: Any) -> None:
    """A TypeError naming the argument of :func:`identify` that is not of its type."""
    if not isinstance(stats, ActivationStats | Recording | AttributionStats | ProjectedStats):
        raise TypeError(f"identify: stats must be a Recording, ActivationStats, "
                        f"AttributionStats or ProjectedStats, got {type(stats).__name__}")
    if not isinstance(config, IdentifyConfig):
        example = (f"IdentifyConfig(statistic={config!r})" if isinstance(config, str)
                   else "IdentifyConfig()")
        raise TypeError(f"identify: config must be an IdentifyConfig, got {config!r}; e.g. "
                        f"{example}")
    if not isinstance(model, str):
        raise TypeError(f"identify: model must be the model's name (a str), got {model!r}")


def identify(stats: SelectionInputs | Recording, config: IdentifyConfig,
             model: str, warn_empty: bool = True) -> NeuronSets:
    """Select and assign emotion neurons; each emotion's list is ranked by score, best first.
    Emotions left without a neuron are named in a warning unless ``warn_empty`` is false.

    From attributions the overlap counts are those of the selected sets (there are no
    activation probabilities to share a neuron by).

    >>> sets = identify(recording, IdentifyConfig(), "smollm2-135m")  # doctest: +SKIP
    >>> by_layer = sets.layer_indices("fear")  # doctest: +SKIP
    """
    _check_arguments(stats, config, model)
    summary = stats.stats() if isinstance(stats, Recording) else stats
    members, score = membership(summary, config)
    emotions: dict[str, list[Neuron]] = {}
    for e, emotion in enumerate(EMOTIONS):
        chosen = [Neuron(layer, index, float(score[e, layer, index]))
                  for layer, index in members[e].nonzero().tolist()]
        emotions[emotion] = sorted(chosen, key=lambda n: (-n.score, n.layer, n.index))
    empty = [emotion for emotion in EMOTIONS if not emotions[emotion]]
    if empty and warn_empty:
        reason = _EMPTY_BECAUSE["per-emotion" if config.rule == "per-emotion"
                                else config.assignment]
        warnings.warn(f"no neurons assigned to {', '.join(empty)}: {reason}", stacklevel=2)
    sets = NeuronSets(model=model, site=summary.site, n_layers=summary.n_layers,
                      width=summary.width, config=config, emotions=emotions)
    if isinstance(summary, AttributionStats):
        sets.overlap = sets.selected_overlap()
    else:
        passes = shared_membership(_activations(summary), config)[:, members.any(0)].double()
        sets.overlap = (passes @ passes.T).long().tolist()
    return sets

