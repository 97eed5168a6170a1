"""Select the neurons that fire selectively for one emotion, from recorded statistics alone.

The statistic (:mod:`emoneuron.selection.scores`: ``lape``, ``frequency``, ``smd``, ``welch``,
``auroc`` from a recording; ``attribution``, ``attribution-specific`` from an attribution pass)
scores every neuron; the rule picks neurons by those scores, without touching the model again:

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

:data:`SELECTION_METHODS` names complete selections (site, statistic, rule, assignment); a new
method is one more entry there.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import read_json, write_json
from emoneuron.models.adapters import ACTIVATION_SITE, DEFAULT_SITE, SITES
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.statistics import ActivationStats, Recording
from emoneuron.selection.scores import (
    ATTRIBUTION_STATISTICS,
    STATISTICS,
    activity_bar,
    compute_scores,
    entropy_selectivity,
)

METHODS = (*STATISTICS, *ATTRIBUTION_STATISTICS)
ASSIGNMENTS = ("argmax", "lape", "normalised")
RULES = ("global", "per-layer", "per-emotion")
DEPTH_BINS = 10


@dataclass(frozen=True)
class IdentifyConfig:
    """How neurons are selected: the statistic, the rule and the assignment (module docs).

    >>> IdentifyConfig(rule="per-emotion", top_n=40).method
    'lape'
    """

    method: str = "lape"  # the statistic; ``--statistic`` on the command line
    share: float = 0.01
    assignment: str = "argmax"
    activity_quantile: float = 0.95
    normalised_threshold: float = 0.25
    rule: str = "global"
    top_n: int = 50

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown statistic {self.method!r}: use one of {', '.join(METHODS)}")
        if self.assignment == "multi":
            raise UserError("assignment 'multi' was split in two: use 'lape' (Tang et al.: raw "
                            "activation probability above the activity bar) or 'normalised' "
                            "(normalised probability >= --normalised-threshold)")
        if self.assignment not in ASSIGNMENTS:
            raise UserError(f"unknown assignment {self.assignment!r}: use {', '.join(ASSIGNMENTS)}")
        if self.assignment == "lape" and self.rule == "per-emotion":
            raise UserError("assignment lape assigns the neurons a global or per-layer rule "
                            "keeps; with --rule per-emotion use argmax or normalised")
        if self.rule not in RULES:
            raise UserError(f"unknown rule {self.rule!r}: use one of {', '.join(RULES)}")
        if not 0 < self.share <= 1:
            raise UserError(f"share {self.share} must be in (0, 1], e.g. 0.01 for 1%")
        if self.top_n < 1:
            raise UserError(f"top-n {self.top_n} must be at least 1, e.g. 50")
        if not 0 <= self.activity_quantile < 1:
            raise UserError(f"activity quantile {self.activity_quantile} must be in [0, 1), "
                            "e.g. 0.95")
        if not 0 < self.normalised_threshold <= 1:
            raise UserError(f"normalised threshold {self.normalised_threshold} must be in "
                            "(0, 1], e.g. 0.25")


@dataclass(frozen=True)
class SelectionMethod:
    """A complete, named way to select emotion neurons: where to record and how to select."""

    name: str
    label: str  # shown in reports
    site: str
    config: IdentifyConfig
    description: str

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise UserError(f"unknown site {self.site!r}: use one of {', '.join(SITES)}")

    def overridden(self, site: str | None = None, **settings: Any) -> SelectionMethod:
        """This method with its site and the given IdentifyConfig fields replaced (``None``
        keeps the method's own); the label says what was changed."""
        changed = {name: value for name, value in {**settings, "site": site}.items()
                   if value is not None}
        if not changed:
            return self
        label = f"{self.label}, with " + ", ".join(
            f"{'statistic' if name == 'method' else name} {value}"
            for name, value in changed.items())
        changed.pop("site", None)
        return replace(self, label=label, site=site or self.site,
                       config=replace(self.config, **changed))


SELECTION_METHODS: dict[str, SelectionMethod] = {method.name: method for method in (
    SelectionMethod(
        "lape", "LAPE (Tang et al. 2024)", ACTIVATION_SITE,
        IdentifyConfig(method="lape", rule="global", share=0.01, activity_quantile=0.95,
                       assignment="lape"),
        "Tang et al.'s LAPE: P(act(gate) > 0 | emotion), lowest-entropy 1% of neurons active "
        "above the 95th-percentile bar, each assigned to every emotion above that bar"),
    SelectionMethod(
        "entropy-argmax", "entropy selectivity at act(gate)*up, argmax (former default)",
        DEFAULT_SITE, IdentifyConfig(method="lape", rule="global", share=0.01,
                                     assignment="argmax"),
        "LAPE's entropy filter and 1% cut on the sign of the down projection's input, each "
        "neuron assigned to its strongest emotion"),
    SelectionMethod(
        "auroc", "one-vs-rest AUROC at act(gate), global 1%, argmax", ACTIVATION_SITE,
        IdentifyConfig(method="auroc", rule="global", share=0.01, assignment="argmax"),
        "the 1% of neurons whose activation best separates one emotion's tokens from the "
        "rest, each assigned to that emotion"),
    SelectionMethod(
        "attribution", "gradient x activation attribution, global 1%, argmax (positive "
        "control)", DEFAULT_SITE,
        IdentifyConfig(method="attribution-specific", rule="global", share=0.01,
                       assignment="argmax"),
        "the 1% of neurons whose zeroing most lowers the gold label's log-probability for one "
        "emotion beyond the others (first-order estimate on the identification split, "
        "emoneuron.causal.attribution), each assigned to that emotion"),
)}


def selection_method(name: str) -> SelectionMethod:
    if name not in SELECTION_METHODS:
        raise UserError(f"unknown selection method {name!r}: use one of "
                        f"{', '.join(SELECTION_METHODS)}")
    return SELECTION_METHODS[name]


@dataclass(frozen=True)
class Neuron:
    layer: int
    index: int
    score: float


@dataclass
class NeuronSets:
    model: str
    site: str
    n_layers: int
    width: int
    config: IdentifyConfig
    emotions: dict[str, list[Neuron]]
    overlap: list[list[int]] = field(default_factory=list)

    def layer_indices(self, emotion: str) -> dict[int, list[int]]:
        by_layer: dict[int, list[int]] = {}
        for neuron in self.emotions[emotion]:
            by_layer.setdefault(neuron.layer, []).append(neuron.index)
        return by_layer

    def to_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        method = config.pop("method")
        return {
            "model": self.model, "site": self.site, "method": method, "statistic": method,
            "rule": self.config.rule, "parameters": config, "n_layers": self.n_layers,
            "width": self.width,
            "emotions": {e: [asdict(n) for n in ns] for e, ns in self.emotions.items()},
            "overlap": {"emotions": list(EMOTIONS), "counts": self.overlap,
                        "selected": self.selected_overlap()},
            "distribution": self.distribution(),
        }

    def selected_overlap(self) -> list[list[int]]:
        """Neurons in both emotions' sets, (E, E); the diagonal is each set's size."""
        sets = [{(n.layer, n.index) for n in self.emotions[e]} for e in EMOTIONS]
        return [[len(a & b) for b in sets] for a in sets]

    def distribution(self) -> dict[str, Any]:
        """Counts per layer and per relative depth (layer / n_layers, in tenths) per emotion."""
        per_layer = {e: [0] * self.n_layers for e in EMOTIONS}
        depth = {e: [0] * DEPTH_BINS for e in EMOTIONS}
        for emotion in EMOTIONS:
            for neuron in self.emotions[emotion]:
                per_layer[emotion][neuron.layer] += 1
                depth[emotion][neuron.layer * DEPTH_BINS // self.n_layers] += 1
        return {"per_layer": per_layer,
                "relative_depth": {"bins": [f"{b / DEPTH_BINS:.1f}-{(b + 1) / DEPTH_BINS:.1f}"
                                            for b in range(DEPTH_BINS)], "counts": depth}}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> NeuronSets:
        try:
            payload = read_json(path)
            config = IdentifyConfig(method=payload["method"], **_current(payload["parameters"]))
            emotions = {e: [Neuron(int(n["layer"]), int(n["index"]), float(n["score"]))
                            for n in payload["emotions"][e]] for e in EMOTIONS}
            return cls(model=payload["model"], site=payload["site"],
                       n_layers=int(payload["n_layers"]), width=int(payload["width"]),
                       config=config, emotions=emotions,
                       overlap=payload.get("overlap", {}).get("counts", []))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path}: not a valid neurons.json ({error!r}); "
                            "write one with `emoneuron identify`") from None


def _current(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters of a neurons.json written before ``multi`` became ``normalised``."""
    if "multi_threshold" not in parameters:
        return parameters
    renamed = {**parameters, "normalised_threshold": parameters["multi_threshold"]}
    del renamed["multi_threshold"]
    if renamed["assignment"] == "multi":
        renamed["assignment"] = "normalised"
    return renamed


def shared_membership(stats: ActivationStats, config: IdentifyConfig) -> torch.Tensor:
    """(E, L, W) bool: the emotions a kept neuron may share, by the config's multi-emotion
    criterion: above the activity bar for ``lape``, the normalised threshold otherwise."""
    if config.assignment == "lape":
        probability = stats.probability()
        return probability > activity_bar(probability, config.activity_quantile)
    return entropy_selectivity(stats)[0] >= config.normalised_threshold


def membership(stats: ActivationStats | AttributionStats, config: IdentifyConfig,
               capped: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Which neurons the rule gives to each emotion, (E, L, W) bool, and their scores (E, L, W).

    ``capped=False`` drops the share / top-n limit and keeps every eligible neuron the rule
    would assign: what the shuffled-label null compares against the real score cut-off."""
    scores = compute_scores(stats, config.method, config.activity_quantile)
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
        members = shared_membership(stats, config) & kept
    return members, overall.expand(n_emotions, n_layers, width)


_EMPTY_BECAUSE = {
    "per-emotion": "no eligible neuron scores for them",
    "argmax": "none of the kept neurons is strongest for them",
    "lape": "no kept neuron's activation probability for them is above the activity bar",
    "normalised": "no kept neuron's normalised probability for them reaches the threshold",
}


def identify(stats: ActivationStats | Recording | AttributionStats, config: IdentifyConfig,
             model: str, warn_empty: bool = True) -> NeuronSets:
    """Select and assign emotion neurons; each emotion's list is ranked by score, best first.
    Emotions left without a neuron are named in a warning unless ``warn_empty`` is false.

    From attributions the overlap counts are those of the selected sets (there are no
    activation probabilities to share a neuron by).

    >>> sets = identify(recording, IdentifyConfig(), "smollm2-135m")  # doctest: +SKIP
    >>> by_layer = sets.layer_indices("fear")  # doctest: +SKIP
    """
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
        passes = shared_membership(summary, config)[:, members.any(0)].double()
        sets.overlap = (passes @ passes.T).long().tolist()
    return sets

