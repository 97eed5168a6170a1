"""The run's stages on the residual stream's side: the label-free probe and the emotion
directions fitted, each direction tested against its nulls, and steering, judged by the
classifier and by the probe and the lexicon. :mod:`emoneuron.app.run` calls them in order; each
keeps its files when computed from the same inputs (:func:`~emoneuron.app.reuse.reused`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from emoneuron.app.reuse import reused
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.evaluation.execution import EvaluationSetup, execute_interventions
from emoneuron.causal.evaluation.probe import Probe, emotion_labels, residual_features
from emoneuron.causal.evaluation.readout import probe_from
from emoneuron.causal.experiments.directions import EmotionDirections
from emoneuron.causal.experiments.dirtest import (
    LAYER_CHOICE,
    NULLS,
    DirectionUnits,
    chosen_layers,
    direction_cells,
    direction_table,
    probe_accuracy,
)
from emoneuron.causal.experiments.dirtest import probe_rows as dirtest_probe_rows
from emoneuron.causal.experiments.method_comparison import selection_methods
from emoneuron.causal.experiments.steer import steer, steering_inputs
from emoneuron.causal.experiments.steerjudge import judged_steering
from emoneuron.causal.inference.setlevel import pending_conditions
from emoneuron.config import RunConfig
from emoneuron.data.schema import records_hash
from emoneuron.data.split import Splits
from emoneuron.executors import LocalExecutor, RayExecutor
from emoneuron.io import content_hash, read_json, write_csv, write_json
from emoneuron.layout import (
    DIRECTIONS,
    DIRECTIONS_DESCRIPTION,
    DIRECTIONS_SET_LEVEL,
    PROBE,
    PROBE_DESCRIPTION,
    STEERING,
    STEERING_JUDGES,
    STEERING_JUDGES_DESCRIPTION,
)
from emoneuron.models.loading import LoadedModel
from emoneuron.rundir import RunDir
from emoneuron.selection.config import statistic_entry
from emoneuron.selection.identify import NeuronSets
from emoneuron.version import __version__

log = logging.getLogger(__name__)


def fits_probe_or_directions(config: RunConfig) -> bool:
    """Whether the run fits the probe and the emotion directions: for the probe stage (and the
    direction tests and judged steering it brings), or to select by direction projection."""
    return config.probe or any(statistic_entry(method.config.statistic).reads == "directions"
                               for method in selection_methods(config.compare_methods))


def fitted_probe_and_directions(model: str, batch_size: int, loaded: LoadedModel,
                                splits: Splits, train: torch.Tensor, run_dir: RunDir,
                                progress: bool) -> tuple[Probe, DirectionUnits]:
    """The label-free probe and the emotion directions, both fitted on ``train``, the
    identification split's residual features (kept by its recording pass), and evaluated on
    the evaluation split's (one feature pass; fitted once per data and model, read back
    after), and the layers the directions are tested at, chosen from the probe on
    identification data."""
    inputs = content_hash([__version__, records_hash(splits.identify),
                           records_hash(splits.evaluate), model, "probe and directions"])
    labels = emotion_labels(splits.identify)

    def fit() -> tuple[tuple[Probe, EmotionDirections], list[str]]:
        held_out = residual_features(loaded, splits.evaluate, batch_size=batch_size,
                                     progress=progress)
        held_out_labels = emotion_labels(splits.evaluate)
        probe = probe_from(train, labels, held_out, held_out_labels)
        directions = EmotionDirections.fit(train, labels).with_held_out(held_out,
                                                                        held_out_labels)
        probe.save(run_dir.file(PROBE), {"model": model})
        directions.save(run_dir.file(DIRECTIONS), {
            "model": model, "tested_layers": chosen_layers(probe_accuracy(probe)),
            "layer_choice": LAYER_CHOICE, "nulls": NULLS,
            "neutral_text": "none: the run's data has no emotion-neutral dialogues",
            **{f"probe_{key}": value for key, value in probe.description().items()
               if key.endswith("accuracy")}})
        return (probe, directions), [PROBE, PROBE_DESCRIPTION, DIRECTIONS, DIRECTIONS_DESCRIPTION]

    probe, directions = reused(
        run_dir, "probe", inputs, lambda: (Probe.load(run_dir.file(PROBE)),
                                           EmotionDirections.load(run_dir.file(DIRECTIONS))), fit)
    layers = tuple(chosen_layers(probe_accuracy(probe)))
    return probe, DirectionUnits(directions, train, labels, layers)


def direction_tests(design: Design, classifier: Classifier, loaded: LoadedModel,
                    probe: Probe, units: DirectionUnits, splits: Splits,
                    store: ConditionStore, probe_store: ConditionStore, run_dir: RunDir,
                    progress: bool, executor: LocalExecutor | RayExecutor,
                    setup: EvaluationSetup) -> None:
    """Each emotion's direction against its nulls, with the classifier (look by look, in the
    run's condition store) and with the probe: ``directions_setlevel.csv``; none where the
    model has no layer to remove them at (one decoder layer)."""
    if not units.layers:
        log.info("directions: no residual layer between the embeddings and the top one; "
                 "no direction is tested")
        return
    cells = [cell for null in design.direction_nulls for cell in direction_cells(design, null)]
    while todo := pending_conditions(store, splits.evaluate, design, cells):
        execute_interventions(classifier, units.intervention, splits.evaluate, todo, store,
                              progress, executor, setup)
    probe_results = dirtest_probe_rows(loaded, probe, splits.evaluate, design, units,
                                       probe_store, classifier.batch_size, progress)
    write_csv(run_dir.file(DIRECTIONS_SET_LEVEL),
              direction_table(store, splits.evaluate, design, units, probe_results))


def classifier_steering(classifier: Classifier, sets: NeuronSets, strength: float,
                        seed: int, run_dir: RunDir, progress: bool) -> dict[str, Any]:
    """``steering.json``, kept when computed from the same inputs."""
    def compute() -> tuple[dict[str, Any], list[str]]:
        steering = steer(classifier, sets, strength, seed, progress)
        write_json(run_dir.file(STEERING), steering)
        return steering, [STEERING]

    return reused(run_dir, "steering",
                  content_hash(steering_inputs(classifier, sets, strength, seed)),
                  lambda: dict(read_json(run_dir.file(STEERING))), compute)


def judged_steering_stage(config: RunConfig, loaded: LoadedModel, sets: NeuronSets,
                          probe: Probe, units: DirectionUnits, run_dir: RunDir,
                          progress: bool, generated: dict[str, list[str]] | None) -> None:
    """Both units' steering judged by the probe and the lexicon against their nulls
    (``steering_judges.csv`` and ``.json``), kept when computed from the same inputs;
    ``generated``: the classifier steering's continuations, not generated again."""
    inputs = content_hash([__version__, run_dir.hashes([PROBE, DIRECTIONS]), sets.to_json(),
                           units.layers, config.steer_strength, config.design.control_seeds[0],
                           config.steer_null_draws, "judged steering"])

    def judge() -> tuple[None, list[str]]:
        table, description = judged_steering(
            loaded, probe, sets, units, config.steer_strength, config.design.control_seeds[0],
            config.steer_null_draws, config.record.batch_size, progress, generated)
        write_csv(run_dir.file(STEERING_JUDGES), table)
        write_json(run_dir.file(STEERING_JUDGES_DESCRIPTION), description)
        return None, [STEERING_JUDGES, STEERING_JUDGES_DESCRIPTION]

    reused(run_dir, "steering_judges", inputs, lambda: None, judge)


