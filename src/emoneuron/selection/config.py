"""How neurons are selected, importable without torch: the statistics, rules and assignments
(:mod:`emoneuron.selection.identify` explains them), :class:`IdentifyConfig`,
:class:`StabilityConfig` and the named selection methods (:data:`SELECTION_METHODS`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from emoneuron.errors import UserError
from emoneuron.models.config import ACTIVATION_SITE, DEFAULT_SITE, Site
from emoneuron.options import at_least, check_fields, check_seeds, did_you_mean, flag

# The model a neurons.json names when `emoneuron identify` was not told (--model-name).
UNKNOWN_MODEL = "unknown"

# What a statistic reads: a recording's activation statistics, an attribution pass's sums
# (emoneuron.causal.experiments.attribution), or a recording and the emotion directions
# (emoneuron.causal.experiments.directions), which a run computes before selecting with it.
Reads = Literal["recording", "attribution", "directions"]


@dataclass(frozen=True)
class StatisticEntry:
    """One selection statistic: its name, what it reads, the function of
    :mod:`emoneuron.selection.scores` that scores it (by name, so that this module needs no
    torch) and what it measures, in a few words."""

    name: str
    reads: Reads
    scorer: str
    measures: str


# The registry: a new statistic is one entry here and its scoring function. The command
# line's choices, the checks and the tables below are read from it.
STATISTICS: dict[str, StatisticEntry] = {entry.name: entry for entry in (
    StatisticEntry("lape", "recording", "lape_scores",
                   "LAPE's entropy of P(active | emotion)"),
    StatisticEntry("frequency", "recording", "frequency_difference",
                   "the activation frequency difference, one-vs-rest"),
    StatisticEntry("smd", "recording", "standardised_mean_difference",
                   "the standardised mean difference (Cohen's d), one-vs-rest"),
    StatisticEntry("welch", "recording", "welch_t", "Welch's t, one-vs-rest"),
    StatisticEntry("auroc", "recording", "auroc", "one-vs-rest AUROC"),
    StatisticEntry("attribution", "attribution", "attribution_mean",
                   "gradient x activation attribution on the classifier's answer"),
    StatisticEntry("attribution-specific", "attribution", "attribution_specific",
                   "the attribution beyond the other emotions' mean"),
    StatisticEntry("direction-projection", "directions", "direction_projection",
                   "mean activation x the down-projection column's projection on the "
                   "emotion's residual-stream direction (Wang et al. 2025)"),
)}


def statistics_reading(reads: Reads) -> tuple[str, ...]:
    """The registered statistics that read ``reads``.

    >>> statistics_reading("attribution")
    ('attribution', 'attribution-specific')
    """
    return tuple(name for name, entry in STATISTICS.items() if entry.reads == reads)


def statistic_entry(name: str) -> StatisticEntry:
    """The registered statistic ``name``, or a UserError naming the choices.

    >>> statistic_entry("smd").reads
    'recording'
    """
    entry: StatisticEntry = _registered("statistic", name, STATISTICS)
    return entry


def _registered(kind: str, name: str, registry: Mapping[str, Any]) -> Any:
    """``registry[name]``, or a UserError naming the ``kind``'s choices."""
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}: use one of {', '.join(registry)}"
                        f"{did_you_mean(name, registry)}")
    return registry[name]


if TYPE_CHECKING:
    Statistic = str
else:  # the registry's names: the command line's choices and check_fields' check
    Statistic = Literal[tuple(STATISTICS)]
Rule = Literal["global", "per-layer", "per-emotion"]
Assignment = Literal["argmax", "lape", "normalised"]
Control = Literal["random", "frequency", "least", "shuffled"]  # emoneuron.selection.controls
SelectionName = Literal["lape", "entropy-argmax", "auroc", "attribution", "direction-projection"]
# The method of `run`, and of every default below it: IdentifyConfig() is its selection and
# RecordConfig() records at its site (tests/test_quickstart.py keeps them equal;
# RecordConfig sits below the selection stage and cannot read this registry).
DEFAULT_SELECTION: SelectionName = "lape"


@dataclass(frozen=True)
class IdentifyConfig:
    """How :func:`emoneuron.selection.identify.identify` scores and keeps neurons; the defaults
    are the default selection method's (``SELECTION_METHODS[DEFAULT_SELECTION]``, LAPE), the
    selection ``emoneuron run`` makes.

    >>> IdentifyConfig(statistic="auroc", rule="per-emotion", top_n=40, assignment="argmax").share
    0.01

    Args:
        statistic: what scores a neuron, one of the registered statistics (STATISTICS):
            LAPE's entropy of P(active | emotion), an activation contrast, a gradient x
            activation attribution, or the write along the emotion's direction
        share: fraction of neurons the global and per-layer rules keep, e.g. 0.01; on the
            command line also a percentage, e.g. 1% (at most 0.5 or 50% there)
        assignment: which emotions a kept neuron belongs to: its strongest (argmax), every
            emotion above the activity bar (lape, Tang et al.), or every emotion whose
            normalised probability reaches the normalised threshold
        activity_quantile: a neuron is active for an emotion above this quantile of all
            activation probabilities (LAPE's eligibility bar)
        normalised_threshold: normalised activation probability that assigns a neuron to an
            emotion under assignment normalised
        rule: keep the top share of all neurons (global), of each layer (per-layer), or each
            emotion's top n (per-emotion)
        top_n: neurons per emotion under rule per-emotion
    """

    statistic: Statistic = "lape"
    share: float = 0.01
    assignment: Assignment = "lape"
    activity_quantile: float = 0.95
    normalised_threshold: float = 0.25
    rule: Rule = "global"
    top_n: int = 50

    def __post_init__(self) -> None:
        if self.assignment == "multi":  # type: ignore[comparison-overlap]
            raise UserError("--assignment multi was split in two: use 'lape' (Tang et al.: raw "
                            "activation probability above the activity bar) or 'normalised' "
                            "(normalised probability >= --normalised-threshold)")
        check_fields(self)
        if self.assignment == "lape" and self.rule == "per-emotion":
            raise UserError("--rule per-emotion with --assignment lape: lape assigns the "
                            "neurons a global or per-layer rule keeps; use --assignment argmax "
                            "(or normalised)")
        _in_range("share", self.share, "(0, 1]", 0 < self.share <= 1, "0.01 for 1%")
        at_least("top_n", self.top_n, 1)
        _in_range("activity_quantile", self.activity_quantile, "[0, 1)",
                  0 <= self.activity_quantile < 1, "0.95")
        _in_range("normalised_threshold", self.normalised_threshold, "(0, 1]",
                  0 < self.normalised_threshold <= 1, "0.25")


def with_rule_assignment(settings: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A method's identification ``settings`` for the options ``given``: a per-emotion rule
    given without an assignment takes argmax where the settings' is LAPE's, which assigns only
    what a global or per-layer cut keeps (an explicit ``assignment="lape"`` is refused).

    >>> with_rule_assignment({"assignment": "lape"}, {"rule": "per-emotion"})
    {'assignment': 'argmax'}
    """
    if (given.get("rule") == "per-emotion" and "assignment" not in given
            and settings.get("assignment") == "lape"):
        return {**settings, "assignment": "argmax"}
    return settings


def identify_config(**given: Any) -> IdentifyConfig:
    """The IdentifyConfig of the options ``given``, the others the default method's (what
    ``emoneuron identify`` builds from its command line).

    >>> identify_config(rule="per-emotion", top_n=40).assignment
    'argmax'
    """
    return IdentifyConfig(**{**with_rule_assignment(asdict(IdentifyConfig()), given), **given})


def check_controls(statistic: str, controls: tuple[str, ...]) -> None:
    """A UserError naming ``--controls`` unless each control can be built for sets selected by
    ``statistic``: the shuffled-label control permutes per-group statistics, which AUROC's
    histograms do not keep."""
    if "shuffled" in controls and statistic == "auroc":
        raise UserError(f"--controls {' '.join(controls)}: the shuffled-label control permutes "
                        "per-group statistics, which the auroc statistic's histograms do not "
                        "keep; leave shuffled out, e.g. --controls random frequency least")


def _in_range(name: str, value: float, interval: str, inside: bool, example: str) -> None:
    if not inside:
        raise UserError(f"{flag(name)} {value}: must be in {interval}, e.g. {example}")


@dataclass(frozen=True)
class StabilityConfig:
    """How stable the selected sets are (:mod:`emoneuron.selection.stability`).

    Args:
        resamples: bootstrap resamples of the dialogue groups
        permutations: shuffled-label selections for the null count
        seed: seed of the resamples and permutations
    """

    resamples: int = 50
    permutations: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        at_least("resamples", self.resamples, 2)
        at_least("permutations", self.permutations, 1)
        check_seeds("seed", (self.seed,))


@dataclass(frozen=True)
class SelectionMethod:
    """A complete, named way to select emotion neurons: where to record and how to select."""

    name: str
    label: str  # shown in reports
    site: Site
    config: IdentifyConfig
    description: str

    def __post_init__(self) -> None:
        check_fields(self)

    def overridden(self, site: Site, config: IdentifyConfig) -> SelectionMethod:
        """This method recorded at ``site`` and selected by ``config``; the label says what
        differs from the method's own settings.

        >>> SELECTION_METHODS["auroc"].overridden("mlp.activation",
        ...     IdentifyConfig(statistic="auroc", rule="per-emotion", assignment="argmax")).label
        'one-vs-rest AUROC at act(gate), global 1%, argmax, with rule per-emotion'
        """
        new = replace(self, site=site, config=config)
        changed = [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
                   if getattr(config, f.name) != getattr(self.config, f.name)]
        changed += [("site", site)] if site != self.site else []
        if not changed:
            return self
        return replace(new, label=f"{self.label}, with " + ", ".join(
            f"{name} {value}" for name, value in changed))


SELECTION_METHODS: dict[str, SelectionMethod] = {method.name: method for method in (
    SelectionMethod(
        "lape", "LAPE (Tang et al. 2024)", ACTIVATION_SITE,
        IdentifyConfig(statistic="lape", rule="global", share=0.01, activity_quantile=0.95,
                       assignment="lape"),
        "Tang et al.'s LAPE: P(act(gate) > 0 | emotion), lowest-entropy 1% of neurons active "
        "above the 95th-percentile bar, each assigned to every emotion above that bar"),
    SelectionMethod(
        "entropy-argmax", "entropy selectivity at act(gate)*up, argmax (former default)",
        DEFAULT_SITE, IdentifyConfig(statistic="lape", rule="global", share=0.01,
                                     assignment="argmax"),
        "LAPE's entropy filter and 1% cut on the sign of the down projection's input, each "
        "neuron assigned to its strongest emotion"),
    SelectionMethod(
        "auroc", "one-vs-rest AUROC at act(gate), global 1%, argmax", ACTIVATION_SITE,
        IdentifyConfig(statistic="auroc", rule="global", share=0.01, assignment="argmax"),
        "the 1% of neurons whose activation best separates one emotion's tokens from the "
        "rest, each assigned to that emotion"),
    SelectionMethod(
        "attribution", "gradient x activation attribution, global 1%, argmax (positive "
        "control)", DEFAULT_SITE,
        IdentifyConfig(statistic="attribution-specific", rule="global", share=0.01,
                       assignment="argmax"),
        "the 1% of neurons whose zeroing most lowers the gold label's log-probability for one "
        "emotion beyond the others (first-order estimate on the identification split, "
        "emoneuron.causal.experiments.attribution), each assigned to that emotion"),
    SelectionMethod(
        "direction-projection", "direction projection (Wang et al. 2025), global 1%, argmax",
        DEFAULT_SITE,
        IdentifyConfig(statistic="direction-projection", rule="global", share=0.01,
                       assignment="argmax"),
        "the 1% of neurons that write most along an emotion's residual-stream direction per "
        "token (mean activation on its dialogues x the down-projection column's projection "
        "on the direction; emoneuron.causal.experiments.directions), each assigned to that "
        "emotion"),
)}


def selection_method(name: str) -> SelectionMethod:
    """The registered selection method ``name``.

    >>> selection_method("auroc").site
    'mlp.activation'
    """
    method: SelectionMethod = _registered("selection method", name, SELECTION_METHODS)
    return method
