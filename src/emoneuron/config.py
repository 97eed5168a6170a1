"""The configuration of ``emoneuron run`` (:class:`RunConfig`), importable without torch: the
run's own settings and one config per stage (recording, identification, the condition design,
the executor). Every field is one command-line option of the same name (``top_n`` is
``--top-n``), on ``run`` and on the stage's own command.

Presets (:data:`PRESETS`, ``--preset``) set the size of a run and a selection method
(``--selection``, :data:`~emoneuron.selection.config.SELECTION_METHODS`) sets the site and the
identification fields; options given explicitly override both (:func:`preset_config`).
``demo`` is a quick look, too small to detect modest effects (its run time on 2 CPU cores:
BENCHMARKS.md); ``study`` evaluates at least 60 dialogues per emotion.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from emoneuron.causal.config import AnswerFormatName, Design, PromptChoice, PromptStyle
from emoneuron.data.synth import check_size
from emoneuron.errors import UserError
from emoneuron.executors import ExecutorConfig
from emoneuron.models.config import (
    AUTO_DEVICE,
    DEFAULT_MODEL,
    REMOVABLE_SITES,
    check_device,
)
from emoneuron.options import (
    as_given,
    at_least,
    changed_fields,
    check_fields,
    check_fraction,
    check_seeds,
    distinct,
    finite,
    nested,
)
from emoneuron.recording.config import RecordConfig
from emoneuron.selection.config import (
    DEFAULT_SELECTION,
    SELECTION_METHODS,
    IdentifyConfig,
    SelectionMethod,
    SelectionName,
    check_controls,
    selection_method,
    statistic_entry,
    with_rule_assignment,
)

PresetName = Literal["", "demo", "study", "size"]


@dataclass(frozen=True)
class RunConfig:
    """Everything ``emoneuron run`` does, e.g. ``run(RunConfig(per_emotion=60), "runs/a")``;
    :func:`preset_config` builds one from a preset, a selection method and options by name.

    >>> config = RunConfig(per_emotion=60)
    >>> config.selection, config.identify.statistic, config.identify.assignment
    ('lape', 'lape', 'lape')

    Args:
        model: an embedded model name, a Hugging Face id or a model directory
        data: dialogues to analyse (JSONL); unset: the built-in synthetic dialogues
        per_emotion: synthetic dialogues per emotion
        max_turns: turns per synthetic dialogue, at most
        seed: seed of the synthetic data, the split and the few-shot examples
        eval_fraction: share of the dialogues held out for evaluation
        selection: the named selection method; sets the site and the identification fields
            (options given explicitly override it)
        record: how the identification split is recorded (RecordConfig)
        identify: how neurons are selected (IdentifyConfig)
        design: what is evaluated besides the baseline (Design)
        sweep: evaluate the layer-range x proportion sweep and the proportion controls
        shots: few-shot examples per emotion in the prompt (0 = zero-shot)
        prompt_choice: best picks the prompt style and calibration with the highest
            worst-emotion accuracy on the identification split; fixed uses prompt and calibrate
            (given with best, they are refused, not ignored)
        calibrate: contextual calibration of the label probabilities (prompt choice fixed)
        prompt: prompt style with prompt choice fixed: the chat template for instruct models
            and plain text otherwise (auto), plain, or chat
        answer_format: what the model answers: the emotion word (label), the letter of a
            per-dialogue shuffled option list (letters), or yes/no per emotion (yesno, six
            queries per dialogue)
        eval_data: evaluate on this JSONL file instead of a held-out split
        baseline_data: also evaluate the unchanged model on this JSONL file (e.g. a real
            corpus from `emoneuron data load`), apart from identification and the conditions
        baseline_per_emotion: records of each emotion evaluated from baseline data, at most
            (a seeded sample; the real counts are reported beside it)
        compare_methods: selection methods compared by their causal effect
        method_control_seeds: random control seeds of each compared method (the first N)
        equal_size: also compare the methods at equal set size: each method's set of an
            emotion cut to its top-ranked neurons, as many as the smallest compared set of
            that emotion, against random sets matched to the cut sets (methods.csv and
            setlevel.csv rows METHOD@equal, beside the full sets')
        probe: fit the label-free probe (residual stream, dialogue read alone) and test
            whether removing each set lowers its emotion's information beyond random sets;
            also find each emotion's residual-stream direction and test removing it against
            random and shuffled-label directions (directions_setlevel.csv)
        steer: also amplify each emotion's neurons and measure the shift toward it
        steer_strength: the steering factor (above 1)
        steer_judges: steer with each emotion's neurons and with its direction, and judge the
            continuations by the label-free probe and the emotion lexicon, not the classifier
            (steering_judges.csv; needs --probe); a resumed run may add it
        steer_null_draws: null draws of the judged steering, per unit: random neuron sets
            for each emotion and random directions shared by all (0: no null, no verdict;
            each draw adds seven generations of the neutral dialogues)
        device: auto (CUDA where present, else MPS, else cpu), cpu, cuda, cuda:N or mps
        threads: torch CPU threads; unset: torch's default
        execution: where recording and the conditions run (ExecutorConfig)
        preset: the PRESETS entry this config started from ("" = none)
    """

    model: str = DEFAULT_MODEL
    data: str | None = None
    per_emotion: int = 40
    max_turns: int = 5
    seed: int = 0
    eval_fraction: float = 0.4
    selection: SelectionName = DEFAULT_SELECTION
    record: RecordConfig = field(
        default_factory=lambda: RecordConfig(site=SELECTION_METHODS[DEFAULT_SELECTION].site))
    identify: IdentifyConfig = field(
        default_factory=lambda: SELECTION_METHODS[DEFAULT_SELECTION].config)
    design: Design = field(default_factory=Design)
    sweep: bool = True
    shots: int = 1
    prompt_choice: PromptChoice = "best"
    calibrate: bool = True
    prompt: PromptStyle = "auto"
    answer_format: AnswerFormatName = "label"
    eval_data: str | None = None
    baseline_data: str | None = None
    baseline_per_emotion: int = 30
    compare_methods: tuple[SelectionName, ...] = get_args(SelectionName)
    method_control_seeds: int = 1
    equal_size: bool = False
    probe: bool = True
    steer: bool = True
    steer_strength: float = 4.0
    steer_judges: bool = False
    steer_null_draws: int = 4
    device: str = AUTO_DEVICE
    threads: int | None = None
    execution: ExecutorConfig = field(default_factory=ExecutorConfig)
    preset: PresetName = ""

    def __post_init__(self) -> None:
        check_fields(self)
        at_least("per_emotion", self.per_emotion, 1)
        check_size(self.per_emotion, self.max_turns)
        check_fraction("eval_fraction", self.eval_fraction)
        check_seeds("seed", (self.seed,))
        at_least("shots", self.shots, 0)
        at_least("baseline_per_emotion", self.baseline_per_emotion, 1)
        at_least("method_control_seeds", self.method_control_seeds, 1)
        at_least("steer_null_draws", self.steer_null_draws, 0)
        if self.steer_null_draws == 1:
            raise UserError("--steer-null-draws 1: one null draw has no spread to test "
                            "against; give 0 (no verdict) or at least 2")
        if self.threads is not None:
            at_least("threads", self.threads, 1)
            cpus = os.cpu_count() or 1
            if self.threads > 4 * cpus:
                raise UserError(f"--threads {self.threads}: this machine has {cpus} CPUs; give "
                                f"at most {4 * cpus}, or leave it unset for torch's default")
        distinct("compare_methods", self.compare_methods)
        finite("steer_strength", (self.steer_strength,))
        if self.steer_strength <= 1:
            raise UserError(f"--steer-strength {self.steer_strength}: steering amplifies, give "
                            "a value above 1, e.g. 4")
        self._check_combinations()
        check_device(self.device)

    def _check_combinations(self) -> None:
        """Options that are fine alone but cannot work together: found here, before the
        model loads, not after recording and identification."""
        if not self.design.control_seeds:
            raise UserError("--control-seeds: give one or more seeds, e.g. 0 1 2 (the random "
                            "controls, the method comparison and steering draw from them)")
        check_controls(self.identify.statistic, self.design.controls)
        if self.record.site not in REMOVABLE_SITES:
            raise UserError(f"--site {self.record.site}: a run removes the neurons it finds, "
                            f"which it can at {' or '.join(REMOVABLE_SITES)} only; use one of "
                            f"them (`emoneuron record --site {self.record.site}` records there)")
        reads = statistic_entry(self.identify.statistic).reads
        if reads != "recording":
            # An attribution needs the run's classifier, a projection the directions: both are
            # computed for the method comparison, beside the run's own selection.
            method = next(m.name for m in SELECTION_METHODS.values()
                          if statistic_entry(m.config.statistic).reads == reads)
            raise UserError(f"--statistic {self.identify.statistic}: it reads the {reads} a "
                            "run computes for the method comparison only, so it is compared "
                            f"beside the run's own selection; use --compare-methods {method} "
                            f"(its sets land in methods/{method}/neurons.json)")
        if self.equal_size and not self.compare_methods:
            raise UserError("--equal-size: it cuts the compared methods' sets to one size, and "
                            "--compare-methods is empty; give the methods to compare, e.g. "
                            "--compare-methods lape attribution")
        if self.steer_judges and not self.probe:
            raise UserError("--steer-judges: the judged steering reads the label-free probe "
                            "and the emotion directions, which --no-probe leaves out; give "
                            "--probe, or --no-steer-judges")
        ignored = changed_fields(self, FIXED_PROMPT_ONLY)
        if self.prompt_choice != "fixed" and ignored:
            given = as_given(ignored[0], getattr(self, ignored[0]))
            raise UserError(f"{given}: applies only to --prompt-choice fixed (--prompt-choice "
                            f"{self.prompt_choice} picks the prompt style and calibration "
                            f"itself and would ignore it); add --prompt-choice fixed, or drop "
                            f"{given}")
        if self.answer_format in self.design.other_formats:
            raise UserError(f"--other-formats {' '.join(self.design.other_formats)}: "
                            f"{self.answer_format} is the run's own --answer-format; give only "
                            "other formats")

    def selection_method(self) -> SelectionMethod:
        """The named selection method at this config's site and identification settings."""
        return selection_method(self.selection).overridden(self.record.site, self.identify)


# The RunConfig fields only --prompt-choice fixed reads (best chooses them on the
# identification split).
FIXED_PROMPT_ONLY = frozenset({"prompt", "calibrate"})


# Sizes of a run, measured with SmolLM2 on 2 CPU cores (BENCHMARKS.md): demo (`make demo`), 15
# held-out dialogues per emotion; study, 64 held-out and 95 identification dialogues per
# emotion, no dose, sweep or classifier-judged steering. The study's verdicts come from the
# set-level test (20 random sets per set), so its main grid keeps one random control seed: two
# more would add 4,600 dialogue passes that no verdict reads. Both judge steering by the probe
# and the lexicon; the demo without null draws (41 s; no verdict: each draw adds seven
# generations, about a minute on 2 busy cores, so --steer-null-draws 4 is opt-in, 283 s in
# all), the study against 10 per unit (a step a resumed study adds). The demo tests each emotion
# direction against random directions, removed at every position: with the shuffled-label null
# and the two restricted scopes its direction stage took 1,970 s of a 67-minute demo; the study
# keeps all of them.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"per_emotion": 50, "eval_fraction": 0.3, "max_turns": 2, "proportions": (0.5, 1.0),
             "control_seeds": (0, 1), "other_control_seeds": 1, "dose_strengths": (0.5,),
             "compare_methods": ("lape", "attribution"), "null_sets": 6,
             "cross_per_emotion": 0, "futility_look": 0, "direction_nulls": ("random",),
             "direction_scopes": ("all",), "steer_judges": True, "steer_null_draws": 0},
    "study": {"per_emotion": 160, "eval_fraction": 0.4, "max_turns": 2, "controls": ("random",),
              "control_seeds": (0,), "other_control_seeds": 0, "sweep": False,
              "dose_strengths": (), "steer": False,
              "compare_methods": ("lape", "attribution"), "null_sets": 20,
              "cross_per_emotion": 4, "proportions": (0.33, 0.67, 1.0),
              "other_formats": ("letters",), "steer_judges": True, "steer_null_draws": 10},
    "size": {"per_emotion": 30, "eval_fraction": 0.4, "max_turns": 2, "controls": ("random",),
             "control_seeds": (0,), "other_control_seeds": 0, "sweep": False,
             "dose_strengths": (), "steer": False, "prompt_choice": "fixed",
             "compare_methods": (), "null_sets": 4, "scopes": ("all",), "cross_per_emotion": 0,
             "probe": False, "effect_sweep": False},
}


def selection_settings(name: str) -> dict[str, Any]:
    """The options a named selection method sets: its site and identification fields.

    >>> selection_settings("auroc")["statistic"]
    'auroc'
    """
    method = selection_method(name)
    return {"site": method.site, **asdict(method.config)}


def preset_config(preset: str = "", **options: Any) -> RunConfig:
    """A RunConfig from options by field name (``top_n=40``, ``mode="scale"``): each option
    given wins over the preset's (none for ""), which wins over the selection method's site
    and identification fields, which win over the defaults. A per-emotion rule given without an
    assignment takes argmax where the method's is LAPE's (which the per-emotion rule refuses).

    >>> preset_config("demo", rule="per-emotion", top_n=40).identify.assignment
    'argmax'
    """
    chosen = {**PRESETS.get(preset, {}), **options}
    method = with_rule_assignment(
        selection_settings(chosen.get("selection", DEFAULT_SELECTION)), chosen)
    flat = {**method, **chosen, "preset": preset}
    config: RunConfig = nested(RunConfig, flat)
    return config
