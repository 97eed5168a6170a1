"""What a run evaluates and how, importable without torch: the interventions' modes and token
scopes, the condition :class:`Design` and its layer ranges, and the prompt settings of
``emoneuron evaluate`` (:class:`VariantsConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args, get_type_hints

from emoneuron.errors import UserError
from emoneuron.options import (
    at_least,
    check_fields,
    check_fraction,
    check_seeds,
    choices,
    distinct,
    finite,
    flag,
)
from emoneuron.selection.config import Control

Mode = Literal["zero", "mean", "scale", "amplify", "clamp"]  # emoneuron.causal.evaluation.intervene
Scope = Literal["all", "dialogue", "last"]
SweepEval = Literal["self", "all"]
PromptChoice = Literal["best", "fixed"]
FixedStyle = Literal["plain", "chat"]
PromptStyle = Literal["auto", FixedStyle]  # emoneuron.causal.evaluation.classifier
AnswerFormatName = Literal["label", "letters", "yesno"]  # emoneuron.causal.evaluation.answers
DirectionNull = Literal["random", "shuffled"]  # emoneuron.causal.experiments.dirtest
DEFAULT_PROPORTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
LAYER_RANGES = ("bottom", "middle", "top", "all")  # the sweep's thirds of the stack, and all


def in_range(layer: int, n_layers: int, layer_range: str) -> bool:
    """Thirds of the stack: layer ``l`` is in third ``3l // n_layers`` (0 bottom, 2 top)."""
    if layer_range == "all":
        return True
    return LAYER_RANGES.index(layer_range) == layer * 3 // n_layers


# The largest float32 (and, within rounding, bfloat16) value: a strength above it is infinite
# once it multiplies or replaces a model's activations, so every prediction would be NaN.
LARGEST_STRENGTH = 3.4028234663852886e38


def check_strengths(name: str, strengths: tuple[float, ...]) -> None:
    """A UserError naming the option unless every strength is finite and representable."""
    finite(name, strengths)
    too_large = [s for s in strengths if abs(s) > LARGEST_STRENGTH]
    if too_large:
        raise UserError(f"{flag(name)} {too_large[0]:g}: above the largest float32 value "
                        f"({LARGEST_STRENGTH:.4g}), so the changed activations would be "
                        "infinite; give a smaller strength")


def check_scope(tokens: str) -> None:
    """A UserError unless ``tokens`` names a token scope.

    >>> check_scope("dialogue")
    """
    if tokens not in get_args(Scope):
        raise UserError(f"unknown token scope {tokens!r}: use one of "
                        f"{', '.join(get_args(Scope))}")


def check_intervention(mode: str, strength: float, tokens: str) -> None:
    """A UserError unless ``mode`` acts with ``strength`` on the ``tokens`` scope.

    >>> check_intervention("scale", 0.5, "all")
    """
    if mode not in get_args(Mode):
        raise UserError(f"unknown intervention mode {mode!r}: use one of "
                        f"{', '.join(get_args(Mode))}")
    check_scope(tokens)
    check_strengths("strength", (strength,))
    if mode == "scale" and not 0 <= strength < 1:
        raise UserError(f"mode scale attenuates: strength {strength} must be in [0, 1); "
                        "use mode amplify for strengths above 1")
    if mode == "amplify" and strength <= 1:
        raise UserError(f"mode amplify needs a strength above 1, got {strength}; "
                        "use mode scale to attenuate")


@dataclass(frozen=True)
class Design:
    """What a run evaluates besides the baseline (:func:`emoneuron.causal.conditions.grid.grid`).

    >>> len(Design(controls=("random",), control_seeds=(0,)).control_seeds)
    1

    Args:
        control_seeds: seeds of the random control sets matched to each emotion's set
        controls: control sets beside each masked emotion: random neurons, frequency-matched,
            the least selective, and sets selected with shuffled labels (random always)
        other_control_seeds: the first N control seeds also drive the frequency and shuffled
            controls
        proportions: shares of each emotion's set masked by layer range (the sweep) and the
            dose-response proportion controls
        sweep_eval: evaluate a sweep condition on the masked emotion only (self) or on all
        mode: how the neurons are changed: set to zero or their mean, scaled by the strength
            (below 1), amplified (above 1), or clamped to the strength
        strength: the factor of scale and amplify, the value of clamp
        tokens: where the intervention acts: all positions, the dialogue's, or the last
        dose_strengths: extra strengths of the dose-response curve (0 removes, below 1
            attenuates, above 1 amplifies)
        null_sets: random sets (matched layer by layer and by activation frequency) each
            emotion's set is tested against, per method and scope (the set-level test; at
            least 2)
        scopes: token scopes of the set-level test: all positions, the dialogue's only (does
            the set act while the dialogue is read?), the scored position only (at the answer?)
        cross_per_emotion: dialogues of each other emotion in the set-level test's cross
            sample (0: own-emotion statistic only)
        futility_look: random sets drawn before the set-level test's futility look: where no
            statistic of a set comes within p <= 0.3 of significance against them, the rest
            are not drawn (0 or at least null_sets: no such look)
        second_look: random sets drawn before the second look: a set stops there where each
            statistic is futile (p > 0.1) or already a finding with a fifth of alpha, the
            rest spent at the end (0 or at least null_sets: no second look)
        effect_sweep: for each emotion whose own set is beyond random sets (removed at every
            position), the layer range x proportion sweep of that set, each part against its
            own random sets (sweep_setlevel.csv)
        other_formats: answer formats, besides the run's, in which every method's sets are
            also tested against random sets (own drop, every position; formats_setlevel.csv):
            does a set move the emotion or only one way of answering?
        direction_nulls: what each emotion's direction is tested against (where the probe
            runs): random directions matched in norm, directions from shuffled
            identification labels
        direction_scopes: token scopes of the direction test (as --scopes; the probe's test
            always removes the direction at every position of the dialogue read alone)
    """

    control_seeds: tuple[int, ...] = (0, 1, 2)
    controls: tuple[Control, ...] = get_args(Control)
    other_control_seeds: int = 3
    proportions: tuple[float, ...] = DEFAULT_PROPORTIONS
    sweep_eval: SweepEval = "self"
    mode: Mode = "zero"
    strength: float = 0.0
    tokens: Scope = "all"
    dose_strengths: tuple[float, ...] = (0.0, 0.5, 2.0)
    null_sets: int = 20
    scopes: tuple[Scope, ...] = ("all", "dialogue", "last")
    cross_per_emotion: int = 8
    futility_look: int = 4
    second_look: int = 10
    effect_sweep: bool = True
    other_formats: tuple[AnswerFormatName, ...] = ()
    direction_nulls: tuple[DirectionNull, ...] = get_args(DirectionNull)
    direction_scopes: tuple[Scope, ...] = ("all", "dialogue", "last")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.controls and "random" not in self.controls:
            raise UserError(f"--controls {' '.join(self.controls)}: always include random (the "
                            "reference control)")
        if self.controls and not self.control_seeds:
            raise UserError("--control-seeds: give one or more seeds, e.g. 0 1 2")
        check_seeds("control_seeds", self.control_seeds)
        distinct("control_seeds", self.control_seeds)
        distinct("controls", self.controls)
        at_least("other_control_seeds", self.other_control_seeds, 0)
        finite("proportions", self.proportions)
        if any(not 0 < p <= 1 for p in self.proportions):
            raise UserError(f"--proportions {' '.join(map(str, self.proportions))}: each share "
                            "of a set must be in (0, 1], e.g. 0.5 1.0")
        check_strengths("dose_strengths", self.dose_strengths)
        if any(s < 0 for s in self.dose_strengths):
            raise UserError(f"--dose-strengths {' '.join(map(str, self.dose_strengths))}: "
                            "strengths are 0 or more (0 removes, 1 leaves untouched)")
        check_intervention(self.mode, self.strength, self.tokens)
        at_least("null_sets", self.null_sets, 2)
        at_least("cross_per_emotion", self.cross_per_emotion, 0)
        if self.futility_look == 1 or self.futility_look < 0:
            raise UserError(f"--futility-look {self.futility_look}: give 0 (no look) or 2 or "
                            "more random sets (a test needs two)")
        if self.second_look < 0 or 0 < self.second_look <= max(1, self.futility_look):
            raise UserError(f"--second-look {self.second_look}: give 0 (no second look) or "
                            f"more random sets than --futility-look {self.futility_look} "
                            "(and at least 2)")
        distinct("scopes", self.scopes)
        distinct("other_formats", self.other_formats)
        distinct("direction_nulls", self.direction_nulls)
        distinct("direction_scopes", self.direction_scopes)
        hints = get_type_hints(type(self))
        for name in ("scopes", "direction_scopes", "direction_nulls"):
            if not getattr(self, name):
                raise UserError(f"{flag(name)}: give one or more of "
                                f"{', '.join(choices(hints[name]))}")


@dataclass(frozen=True)
class VariantsConfig:
    """The prompt variants ``emoneuron evaluate`` compares
    (:func:`emoneuron.causal.evaluation.prompts.prompt_variants`).

    Args:
        shots: few-shot examples per emotion to try (0 = zero-shot)
        prompts: prompt styles to try: plain text, or the model's chat template
        answer_formats: answer formats to try: the emotion word (label), the letter of a
            shuffled option list (letters), yes/no per emotion (yesno)
        eval_fraction: share of the dialogues evaluated (the rest give the examples)
        seed: seed of the split and the examples' order
        batch_size: dialogues per forward pass (speed and memory only)
    """

    shots: tuple[int, ...] = (0, 1)
    prompts: tuple[FixedStyle, ...] = ("plain", "chat")
    answer_formats: tuple[AnswerFormatName, ...] = ("label",)
    eval_fraction: float = 0.5
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.shots or min(self.shots) < 0:
            raise UserError(f"--shots {' '.join(map(str, self.shots))}: give one or more "
                            "counts of examples per emotion (0 for zero-shot)")
        check_fraction("eval_fraction", self.eval_fraction)
        check_seeds("seed", (self.seed,))
        at_least("batch_size", self.batch_size, 1)
