"""``emoneuron run``: the whole pipeline into one run directory.

data -> splits -> load model -> prompt choice (identification split) -> record (identification
split) -> identify -> baseline, masked and control evaluation (held-out split) -> sweep -> method
comparison -> tables -> report. Each stage's wall time lands in ``manifest.json``; finished
conditions are kept in ``conditions.jsonl`` so an interrupted run resumes.

Its configuration is :class:`emoneuron.config.RunConfig`, with presets and selection methods
resolved by :func:`emoneuron.config.preset_config`.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from emoneuron.app.reuse import previous_run, reused, store_context
from emoneuron.app.units import (
    classifier_steering,
    direction_tests,
    fits_probe_or_directions,
    fitted_probe_and_directions,
    judged_steering_stage,
)
from emoneuron.causal.conditions.grid import Condition, grid, is_sweep
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.baseline import baseline_table
from emoneuron.causal.evaluation.classifier import CHANCE, Classifier, order_shots
from emoneuron.causal.evaluation.execution import (
    EvaluationSetup,
    Sources,
    ablation_for,
    execute,
)
from emoneuron.causal.evaluation.probe import Probe
from emoneuron.causal.evaluation.prompts import PromptChoice, check_prompts, choose_prompt
from emoneuron.causal.evaluation.readout import readout_rows
from emoneuron.causal.experiments.attribution import attribute
from emoneuron.causal.experiments.cards import write_cards
from emoneuron.causal.experiments.directions import EmotionDirections, direction_writes
from emoneuron.causal.experiments.dirtest import (
    DirectionUnits,
)
from emoneuron.causal.experiments.equal_size import at_equal_size
from emoneuron.causal.experiments.method_comparison import (
    RUN_METHOD,
    Compared,
    compare_in_run,
    ranked_methods_table,
    selection_methods,
)
from emoneuron.causal.experiments.steerjudge import generated_by_steer
from emoneuron.causal.inference.setlevel import (
    effect_emotions,
    effect_sweep_cells,
    effect_sweep_table,
    format_baseline,
    format_cells,
    format_table,
    pending_conditions,
    set_level_cells,
    set_level_table,
)
from emoneuron.causal.inference.tables import ablation_tables, dose_table, sweep_table
from emoneuron.causal.inference.units import unit_comparison
from emoneuron.config import RunConfig
from emoneuron.data.dedup import check_leaks
from emoneuron.data.schema import (
    EMOTIONS,
    Record,
    read_records,
    records_hash,
    select_classes,
    write_records,
)
from emoneuron.data.split import Splits, split
from emoneuron.data.synth import synthesize
from emoneuron.data.templates import template_overlap
from emoneuron.errors import UserError
from emoneuron.executors import LocalExecutor, RayExecutor, executor_for
from emoneuron.io import content_hash, write_csv
from emoneuron.layout import (
    BASELINE_EXTRA,
    CARDS,
    CONDITIONS,
    DIRECTIONS,
    DIRECTIONS_SET_LEVEL,
    DOSE,
    FORMATS_SET_LEVEL,
    METHODS_TABLE,
    NEURONS,
    PROBE,
    PROBE_CONDITIONS,
    SET_LEVEL,
    SPLITS,
    STABILITY,
    STATS,
    STEERING_JUDGES,
    SWEEP,
    SWEEP_SET_LEVEL,
    UNITS,
    attribution_file,
    data_file,
    method_file,
    shuffled_file,
)
from emoneuron.models.config import Site
from emoneuron.models.loading import LoadedModel, ModelSpec, load, load_tokenizer
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.cache import cached_record
from emoneuron.recording.config import DEFAULT_GROUPS
from emoneuron.recording.recorder import shard_count
from emoneuron.recording.statistics import N_BINS, Recording
from emoneuron.reporting.report import write_report
from emoneuron.rundir import RunDir
from emoneuron.selection.config import statistic_entry
from emoneuron.selection.controls import ShuffledControl, shuffled_controls
from emoneuron.selection.identify import (
    IdentifyConfig,
    NeuronSets,
    identify,
)
from emoneuron.selection.scores import ProjectedStats
from emoneuron.selection.stability import write_stability
from emoneuron.version import __version__

log = logging.getLogger(__name__)  # stage names and status; the command line shows them (-v, -q)
CARDS_PER_EMOTION = 5  # neuron cards written for each emotion's top neurons, linked in the report
PACKAGES = ("torch", "transformers", "safetensors", "numpy", "pandas", "matplotlib", "tqdm")


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("[%s]", name)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)


def _records(config: RunConfig) -> list[Record]:
    if config.data is None:
        return synthesize(config.per_emotion, config.seed, config.max_turns)
    records, dropped = select_classes(read_records(config.data), include_neutral=False)
    if dropped:
        log.info("%s: %d neutral records left out of the six-way analysis", config.data, dropped)
    return records


def _splits(config: RunConfig, records: list[Record]) -> Splits:
    """Few-shot, identification and evaluation dialogues; with ``eval_data``, every dialogue
    of ``data`` beyond the few-shot examples identifies and ``eval_data`` is evaluated."""
    source = config.data or "synthetic data"
    splits = split(records, config.eval_fraction, config.seed, config.shots, source=source)
    if config.eval_data is None:
        return splits
    evaluation, _ = select_classes(read_records(config.eval_data), include_neutral=False)
    missing = [e for e in EMOTIONS if not any(r.emotion == e for r in evaluation)]
    if missing:
        raise UserError(f"{config.eval_data}: no dialogues of {', '.join(missing)}; the "
                        "evaluation data needs every emotion")
    identification = [*splits.identify, *splits.evaluate]
    check_leaks([*splits.fewshot, *identification], evaluation,
                names=(f"identification ({source})", f"evaluation ({config.eval_data})"))
    return Splits(splits.fewshot, identification, evaluation)


def design_of(config: RunConfig) -> Design:
    """The conditions' design: without the sweep, no proportions."""
    return config.design if config.sweep else replace(config.design, proportions=())


def _shuffled_controls(design: Design, recording: Recording, identify_config: IdentifyConfig,
                       sets: NeuronSets, run_dir: RunDir, inputs: str
                       ) -> dict[int, ShuffledControl]:
    """The shuffled-label control's sets, also written to ``shuffled/`` for inspection;
    read back from there when they were found from the same ``inputs``."""
    seeds = design.control_seeds[:design.other_control_seeds]
    names = [shuffled_file(seed) for seed in seeds]

    def compute() -> tuple[dict[int, ShuffledControl], list[str]]:
        controls = shuffled_controls(recording, identify_config, sets, seeds)
        for seed, control in controls.items():
            control.save(run_dir.file(shuffled_file(seed)))
        return controls, names

    return reused(run_dir, "shuffled", content_hash([inputs, list(seeds)]),
                  lambda: {seed: ShuffledControl.load(run_dir.file(name))
                           for seed, name in zip(seeds, names, strict=True)}, compute)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "emoneuron": __version__}
    for package in PACKAGES:
        versions[package] = importlib.metadata.version(package)
    return versions


def _manifest(config: RunConfig, loaded: LoadedModel, splits: Splits, data_hash: str,
              truncated: int, classifier: Classifier, choice: PromptChoice | None,
              execution: dict[str, Any], timings: dict[str, float], created: str
              ) -> dict[str, Any]:
    selection = config.selection_method()
    return {
        "emoneuron_version": __version__,
        "created": created,
        "config": asdict(config),
        "selection": {"name": selection.name, "label": selection.label,
                      "description": selection.description, "site": selection.site,
                      "identify": asdict(selection.config)},
        "model": {"name": config.model, "architecture": type(loaded.model).__name__,
                  "family": loaded.adapter.family, "n_layers": loaded.n_layers,
                  "width": loaded.width, "n_neurons": loaded.n_layers * loaded.width,
                  "site": selection.site, "dtype": str(loaded.model.dtype),
                  "device": str(loaded.device),  # what --device auto (the default) picked
                  # Counted once where shared (a tied embedding), as models list counts them.
                  "parameters": sum(p.numel() for p in loaded.model.parameters())},
        "data": {"hash": data_hash, "source": config.data or "synthetic (emoneuron data synth)",
                 "counts": splits.counts(), "truncated_to_context": truncated,
                 "template_overlap": template_overlap([*splits.fewshot, *splits.identify],
                                                      splits.evaluate)},
        "evaluation": {"description": classifier.description, "n_shot": len(classifier.shots),
                       "chance": CHANCE, "style": classifier.style,
                       "calibrate": classifier.calibrate,
                       "answer_format": classifier.answer_format,
                       "prompt_choice": choice.to_json() if choice else {"rule": "fixed"}},
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "torch_threads": torch.get_num_threads()},
        "execution": execution,
        "timings": timings,
    }


def run(config: RunConfig, out: str | Path, progress: bool = True) -> Path:
    """Run every stage into ``out`` and return the report path; re-running resumes, reusing
    what is done. Every check on ``out`` passes before anything in it changes.

    >>> run(RunConfig(per_emotion=20), "runs/small")  # doctest: +SKIP
    PosixPath('runs/small/report.html')
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"run: config must be a RunConfig, got {config!r}; e.g. "
                        "RunConfig(per_emotion=20) or preset_config('demo')")
    run_dir = RunDir(out, verify=False)
    run_dir.check_new_or_own()
    with run_dir.locked():
        previous = previous_run(run_dir, config)
        return _run(config, run_dir, previous, progress)


def _run(config: RunConfig, run_dir: RunDir, previous: dict[str, Any] | None,
         progress: bool) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    timer = Timer()
    total_start = time.perf_counter()
    with timer.stage("data"):
        records = _records(config)
        splits = _splits(config, records)
        data_hash = records_hash([*records, *splits.evaluate])
        extra = _baseline_records(config.baseline_data)
        if previous and previous.get("data", {}).get("hash") != data_hash:
            raise UserError(f"{run_dir.path}: holds a run on other data (hash "
                            f"{str(previous.get('data', {}).get('hash'))[:12]}, this data's "
                            f"{data_hash[:12]}); use a new --out directory")
    shots = order_shots(splits.fewshot, config.seed, config.shots)
    with timer.stage("load_model"):
        tokenizer = load_tokenizer(config.model)
        # Every prompt the run asks in is built now: one that cannot work (no chat template,
        # answer words that are not single tokens, no room in the context) is refused before
        # the weights load and before anything is written.
        check_prompts(tokenizer, shots, config.prompt_choice, config.prompt,
                      _asked_formats(config), config.seed)
        loaded = load(config.model, device=config.device, progress=progress,
                      tokenizer=tokenizer)
    choice = None
    if config.prompt_choice == "best":
        with timer.stage("prompt_choice"):
            choice = choose_prompt(loaded, shots, splits.identify, config.record.batch_size,
                                   answer_format=config.answer_format, seed=config.seed)
    classifier = Classifier(loaded, shots, config.record.batch_size,
                            choice.calibrate if choice else config.calibrate,
                            choice.style if choice else config.prompt, config.answer_format,
                            config.seed)
    asking: dict[str, Classifier] = {
        f: replace(classifier, answer_format=f) for f in config.design.other_formats}
    splits, truncated = _fit_to_context(splits, classifier)
    conditions = grid(design_of(config))
    _check_disk(run_dir.path, _output_bytes(loaded, len(conditions), len(splits.evaluate)))

    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")  # one time on every write

    def write_manifest(execution: dict[str, Any], files: dict[str, str]) -> None:
        run_dir.write_manifest({**_manifest(config, loaded, splits, data_hash, truncated,
                                            classifier, choice, execution, timer.seconds,
                                            created),
                                "files": files})

    write_manifest({}, {})  # first: the run this directory holds; no file verified yet
    for name, part in zip(SPLITS, (splits.fewshot, splits.identify, splits.evaluate),
                          strict=True):
        write_records(run_dir.file(data_file(name)), part)
    with executor_for(config.execution) as executor:
        execution: dict[str, Any] = {
            "executor": config.execution.executor, "workers": executor.workers,
            "gpus_per_worker": executor.gpus_per_worker,
            "recording_shards": shard_count(executor, config.execution.shards)}
        if config.execution.executor == "ray":
            execution["ray_version"] = importlib.metadata.version("ray")
        sets, store, fitted = _record_identify_evaluate(
            config, loaded, splits, classifier, asking, conditions, data_hash, executor,
            run_dir, timer, progress)
    if extra is not None:
        with timer.stage("baseline_extra"):
            _baseline_extra(config, extra, classifier, run_dir, progress)
    with timer.stage("tables"):
        for name, table in ablation_tables(store, splits.evaluate, conditions).items():
            write_csv(run_dir.file(f"{name}.csv"), table)
        write_csv(run_dir.file(DOSE), dose_table(store, splits.evaluate, conditions))
        if config.sweep:
            write_csv(run_dir.file(SWEEP), sweep_table(store, splits.evaluate, conditions))
    steered: dict[str, Any] | None = None
    if config.steer:
        with timer.stage("steering"):
            steered = classifier_steering(classifier, sets, config.steer_strength,
                                          config.design.control_seeds[0], run_dir, progress)
    if config.steer_judges and fitted is not None:
        with timer.stage("steering_judges"):
            judged_steering_stage(config, loaded, sets, *fitted, run_dir, progress,
                                  generated_by_steer(steered) if steered else None)
    if run_dir.exists(DIRECTIONS_SET_LEVEL):
        with timer.stage("units"):
            write_csv(run_dir.file(UNITS), unit_comparison(
                *(_optional_csv(run_dir, name) for name in (
                    SET_LEVEL, DIRECTIONS_SET_LEVEL, STEERING_JUDGES, SWEEP, SWEEP_SET_LEVEL))))
    timer.seconds["total_before_report"] = round(time.perf_counter() - total_start, 2)
    files = run_dir.hashes()  # the finished set, which readers verify
    write_manifest(execution, files)
    with timer.stage("report"):
        report = write_report(run_dir.path)
    timer.seconds["total"] = round(time.perf_counter() - total_start, 2)
    write_manifest(execution, files)
    log.info("time per stage: %s", ", ".join(f"{k} {v:.1f}s" for k, v in timer.seconds.items()))
    return report


def _record_identify_evaluate(
        config: RunConfig, loaded: LoadedModel, splits: Splits, classifier: Classifier,
        asking: Mapping[str, Classifier], conditions: list[Condition], data_hash: str,
        executor: LocalExecutor | RayExecutor, run_dir: RunDir, timer: Timer, progress: bool,
) -> tuple[NeuronSets, ConditionStore, tuple[Probe, DirectionUnits] | None]:
    """The stages that run on the executor's workers (recording, conditions) and those
    between them, and the probe and directions where a stage fitted them. Workers load the
    model from ``model``; a local executor uses ``loaded``."""
    model = ModelSpec.on_gpus(config.model, executor.gpus_per_worker)
    selection = config.selection_method()

    def record_at(site: Site, residual: bool = False) -> Recording:
        return cached_record(loaded, splits.identify,
                             replace(config.record, site=site, residual=residual), progress,
                             executor=executor,
                             shards=shard_count(executor, config.execution.shards),
                             setup=model.load)

    with timer.stage("record"):
        # The probe's and the directions' identification features come from this pass, which
        # reads the same dialogues rendered the same way; the run's statistics file keeps the
        # statistics alone, as before.
        recording = record_at(selection.site, residual=fits_probe_or_directions(config))
        stats = replace(recording, residual_means=None)
        stats.save(run_dir.file(STATS), {"model": config.model, "data_hash": data_hash})
    identify_config = selection.config
    # What identification, stability, cards and the shuffled control are computed from.
    inputs = content_hash([__version__, stats.digest(), asdict(identify_config), config.model])
    with timer.stage("identify"):
        sets = _identified(stats, identify_config, config.model, run_dir, inputs, progress)
        if not any(sets.emotions.values()):
            raise UserError(f"{selection.label} selected no neuron for any emotion on "
                            f"{len(splits.identify)} identification dialogues; use more data "
                            "or another --selection, in a new --out directory")
    with timer.stage("cards"):
        def cards() -> tuple[None, list[str]]:
            write_cards(loaded, stats, splits.identify, sets, run_dir.file(CARDS),
                        per_emotion=CARDS_PER_EMOTION)
            return None, run_dir.under(CARDS)

        reused(run_dir, "cards", content_hash([inputs, CARDS_PER_EMOTION]), lambda: None, cards)
    shuffled = {}
    if "shuffled" in config.design.controls:
        with timer.stage("shuffled_labels"):
            shuffled = _shuffled_controls(config.design, stats, identify_config, sets, run_dir,
                                          inputs)
    sources = Sources(stats.stats(), shuffled)
    store = ConditionStore(run_dir.file(CONDITIONS),
                           store_context(splits.evaluate, sets, config.model, classifier))
    setup = EvaluationSetup.of(classifier, model, splits.evaluate)
    with timer.stage("ablation"):
        execute(classifier, sets, sources, splits.evaluate,
                [c for c in conditions if not is_sweep(c)], store, progress, executor, setup)
    with timer.stage("sweep"):
        execute(classifier, sets, sources, splits.evaluate, conditions, store, progress,
                executor, setup)
    tested = [Compared(selection.name, selection.label, sets, "", sources)]
    fitted: list[tuple[Probe, DirectionUnits]] = []

    def probe_and_directions() -> tuple[Probe, DirectionUnits]:
        """Fitted once, by the first stage that needs them (direction-projection's selection
        or the probe)."""
        if not fitted:
            assert recording.residual_means is not None  # fits_probe_or_directions said so
            fitted.append(fitted_probe_and_directions(
                config.model, config.record.batch_size, loaded, splits,
                recording.residual_means, run_dir, progress))
        return fitted[0]

    if config.compare_methods:
        with timer.stage("methods"):
            tested = _compared(config, classifier, splits, stats, sources, sets, record_at,
                               lambda: probe_and_directions()[1].directions,
                               run_dir, progress)
            if config.equal_size:
                cut = at_equal_size(tested)
                for method in cut:
                    method.sets.save(run_dir.file(method_file(method.name, NEURONS)))
                tested += cut
            rows = compare_in_run(classifier, splits.evaluate, store, tested,
                                  conditions, design_of(config),
                                  config.design.control_seeds[:config.method_control_seeds],
                                  progress,
                                  executor, setup)
            update_methods_table(run_dir, rows)
    with timer.stage("set_level"):
        for method in tested:
            _execute_cells(classifier, method, splits.evaluate, config.design,
                           set_level_cells(config.design, method.tag), store, progress,
                           executor, setup)
    probe_rows = []
    if config.probe:
        with timer.stage("probe"):
            probe, units = probe_and_directions()
            # Stored shares depend on the probe, the directions and every tested set.
            probe_store = ConditionStore(run_dir.file(PROBE_CONDITIONS), content_hash([
                run_dir.hashes([PROBE, DIRECTIONS]), [m.sets.to_json() for m in tested]]))
            probe_rows = readout_rows(loaded, probe, splits.evaluate,
                                      [(m.name, m.tag, m.sets, m.sources) for m in tested],
                                      config.design, probe_store, config.record.batch_size,
                                      progress)
    table = set_level_table(store, splits.evaluate, config.design,
                            [(method.name, method.tag) for method in tested], probe_rows)
    write_csv(run_dir.file(SET_LEVEL), table)
    if config.probe:
        with timer.stage("directions"):
            direction_tests(config.design, classifier, loaded, probe, units, splits, store,
                            probe_store, run_dir, progress, executor, setup)
    if config.design.other_formats:
        with timer.stage("formats"):
            _format_tests(config.design, asking, model, splits, tested, store, run_dir,
                          progress, executor)
    if config.design.effect_sweep:
        with timer.stage("effect_sweep"):
            own = next(method for method in tested if method.tag == "")
            _effect_sweep(config.design, own, effect_emotions(table), classifier, splits,
                          store, run_dir, progress, executor, setup)
    return sets, store, fitted[0] if fitted else None


def _execute_cells(classifier: Classifier, method: Compared, evaluation: list[Record],
                   design: Design, cells: list[list[Condition]], store: ConditionStore,
                   progress: bool, executor: LocalExecutor | RayExecutor,
                   setup: EvaluationSetup, family: int = len(EMOTIONS)) -> None:
    """Each cell's set and random sets look by look: the first look's for every cell, then
    the next look's for the cells still undecided (``family``: the cells' Holm family)."""
    while todo := pending_conditions(store, evaluation, design, cells, family):
        execute(classifier, method.sets, method.sources, evaluation, todo, store, progress,
                executor, setup)


def _format_tests(design: Design, asking: Mapping[str, Classifier], model: ModelSpec,
                  splits: Splits, tested: list[Compared], store: ConditionStore,
                  run_dir: RunDir, progress: bool, executor: LocalExecutor | RayExecutor) -> None:
    """Every tested method's sets against random sets with the model asked in each other
    answer format (``asking``: its classifier): the unchanged model first, then the looks."""
    for answer_format, classifier in asking.items():
        setup = EvaluationSetup.of(classifier, model, splits.evaluate)
        own = tested[0]
        execute(classifier, own.sets, own.sources, splits.evaluate,
                [format_baseline(answer_format)], store, progress, executor, setup)
        for method in tested:
            _execute_cells(classifier, method, splits.evaluate, design,
                           format_cells(design, method.tag, answer_format), store, progress,
                           executor, setup)
    write_csv(run_dir.file(FORMATS_SET_LEVEL),
              format_table(store, splits.evaluate, design,
                           [(method.name, method.tag) for method in tested]))


def _effect_sweep(design: Design, own: Compared, emotions: list[str], classifier: Classifier,
                  splits: Splits, store: ConditionStore, run_dir: RunDir, progress: bool,
                  executor: LocalExecutor | RayExecutor, setup: EvaluationSetup) -> None:
    """Where in the model the effect of each emotion in ``emotions`` lives: the sweep of its
    set's parts, each against random parts (look by look)."""
    cells = effect_sweep_cells(design, emotions,
                        lambda c: bool(ablation_for(c, own.sets, own.sources).size))
    _execute_cells(classifier, own, splits.evaluate, design, cells, store, progress, executor,
                   setup, len(cells))
    write_csv(run_dir.file(SWEEP_SET_LEVEL),
              effect_sweep_table(store, splits.evaluate, design, own.name, cells))


def update_methods_table(run_dir: RunDir, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Put ``rows`` into the run's ``methods.csv`` in place of their methods' earlier rows,
    every method there ranked
    (:func:`~emoneuron.causal.experiments.method_comparison.ranked_methods_table`); return
    its path."""
    path = run_dir.file(METHODS_TABLE)
    write_csv(path, ranked_methods_table(run_dir.read_csv(METHODS_TABLE, optional=True), rows))
    return path


def _optional_csv(run_dir: RunDir, name: str) -> pd.DataFrame | None:
    """A table this run wrote, or None where it wrote none."""
    return pd.read_csv(run_dir.file(name)) if run_dir.exists(name) else None


def _asked_formats(config: RunConfig) -> dict[str, str]:
    """Each answer format the run asks in, and the option that asks for it: its own, the
    other formats its sets are tested in, and the label format an attribution is selected by
    (:func:`_compared`)."""
    formats: dict[str, str] = {
        config.answer_format: "--answer-format",
        **dict.fromkeys(config.design.other_formats, "--other-formats")}
    if any(statistic_entry(method.config.statistic).reads == "attribution"
           for method in selection_methods(config.compare_methods)):
        formats.setdefault("label", "--compare-methods")
    return formats


def _baseline_records(path: str | None) -> list[Record] | None:
    """The records of ``--baseline-data``, read before anything is written."""
    if path is None:
        return None
    records = read_records(path)
    if not any(r.emotion in EMOTIONS for r in records):
        raise UserError(f"{path}: no record of the six emotions ({', '.join(EMOTIONS)}); give "
                        "a corpus with emotion labels, e.g. from `emoneuron data load --format "
                        "dailydialog DIR --split test --out FILE`")
    return records


def _baseline_extra(config: RunConfig, records: list[Record], classifier: Classifier,
                    run_dir: RunDir, progress: bool) -> None:
    """The unchanged classifier on ``--baseline-data`` (no part of identification), kept when
    computed from the same records, prompt and sample size."""
    inputs = content_hash([records_hash(records), classifier.description, config.model,
                           [shot.id for shot in classifier.shots], config.baseline_per_emotion,
                           config.seed])

    def evaluate() -> tuple[None, list[str]]:
        table = baseline_table(classifier, records, config.baseline_per_emotion, config.seed,
                               progress)
        write_csv(run_dir.file(BASELINE_EXTRA), table)
        return None, [BASELINE_EXTRA]

    reused(run_dir, "baseline_extra", inputs, lambda: None, evaluate)


def _identified(stats: Recording, config: IdentifyConfig, model: str, run_dir: RunDir,
                inputs: str, progress: bool) -> NeuronSets:
    """The emotion neurons and their stability, read back when found from these ``inputs``."""
    def find() -> tuple[NeuronSets, list[str]]:
        sets = identify(stats, config, model)
        if not any(sets.emotions.values()):
            return sets, []  # nothing to keep: the run stops with its message
        sets.save(run_dir.file(NEURONS))
        write_stability(stats, config, run_dir.file(STABILITY), progress=progress)
        return sets, [NEURONS, STABILITY]

    return reused(run_dir, "identify", inputs, run_dir.neurons, find)


def _compared(config: RunConfig, classifier: Classifier, splits: Splits, recording: Recording,
              sources: Sources, sets: NeuronSets, record_at: Callable[[Site], Recording],
              directions: Callable[[], EmotionDirections], run_dir: RunDir,
              progress: bool) -> list[Compared]:
    """Each compared method's sets, identified from the run's identification split (recorded
    once more per other site by ``record_at``; attributed once with the run's classifier for
    an attribution statistic; projected on the emotion ``directions`` for
    direction-projection); a method equal to the run's own is the run's own sets, which
    are always compared (as ``run`` when no listed method equals them)."""
    selection = config.selection_method()
    recordings = {recording.site: recording}
    attributions: dict[str, AttributionStats] = {}
    compared = []
    for method in selection_methods(config.compare_methods):
        if method.site not in recordings:
            recordings[method.site] = record_at(method.site)
        if (method.site, method.config) == (selection.site, selection.config):
            compared.append(Compared(method.name, method.label, sets, "", sources))
            continue
        statistics: Recording | AttributionStats | ProjectedStats = recordings[method.site]
        reads = statistic_entry(method.config.statistic).reads
        if reads == "directions":
            # Its own step, as attribution's: the directions' writes through the model's
            # down projections, beside the recording at the down projection's input.
            statistics = ProjectedStats(recordings[method.site].stats(),
                                        direction_writes(classifier.loaded, directions()))
        if reads == "attribution":
            if method.site not in attributions:
                # Selected by the label word whatever the run's format: a run in another
                # format then tests them where the answer is not that word.
                labelled = replace(classifier, answer_format="label")
                attributions[method.site] = attribute(labelled, splits.identify, method.site,
                                                      progress=progress)
                attributions[method.site].save(run_dir.file(attribution_file(method.site)),
                                               {"model": config.model})
            statistics = attributions[method.site]
        found = identify(statistics, method.config, config.model)
        found.save(run_dir.file(method_file(method.name, NEURONS)))
        compared.append(Compared(method.name, method.label, found, method.name,
                                 Sources(recordings[method.site].stats())))
    if all(c.tag for c in compared):
        compared.insert(0, Compared(RUN_METHOD, f"this run's selection: {selection.label}",
                                    sets, "", sources))
    return compared


REPORT_BYTES = 20 * 2**20  # figures as PNG and SVG plus the HTML that embeds them


def _output_bytes(loaded: LoadedModel, n_conditions: int, n_eval: int) -> int:
    """A generous estimate of what a run writes: statistics (float64 moments per group and
    int32 histograms, written once as safetensors), predictions per condition, tables and
    report."""
    statistics = ((3 * 8 * DEFAULT_GROUPS + 4 * N_BINS) * len(EMOTIONS)
                  * loaded.n_layers * loaded.width)
    return statistics + n_conditions * (n_eval * 4 + 1024) + REPORT_BYTES


def _check_disk(out_dir: Path, needed: int) -> None:
    """Refuse to start when the output disk cannot hold the run (twice the estimate: every
    file is written beside its old version before the rename)."""
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < 2 * needed:
        raise UserError(f"{existing}: {free / 2**20:.0f} MiB free, a run needs about "
                        f"{2 * needed / 2**20:.0f} MiB; free space or choose another --out")


def _fit_to_context(splits: Splits, classifier: Classifier) -> tuple[Splits, int]:
    identify_part, cut_identify = classifier.fit(splits.identify)
    evaluate_part, cut_evaluate = classifier.fit(splits.evaluate)
    truncated = cut_identify + cut_evaluate
    if truncated:
        log.info("truncated %d of %d dialogues to the model's context (%d tokens) by dropping "
                 "their earliest words; they are marked \"truncated\" in data/*.jsonl", truncated,
                 len(identify_part) + len(evaluate_part), classifier.loaded.context_length)
    return Splits(splits.fewshot, identify_part, evaluate_part), truncated
