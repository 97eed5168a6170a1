"""What a run directory may reuse, decided in one place: whether it holds a run this command
may resume (:func:`previous_run`), a stage's files computed from the same inputs
(:func:`reused`, by their :func:`~emoneuron.io.content_hash`), and the context a condition
store's predictions hold (:func:`store_context`), the same for a run and for ``ablate``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.config import RunConfig
from emoneuron.data.schema import Record, records_hash
from emoneuron.errors import UserError
from emoneuron.io import content_hash
from emoneuron.layout import MANIFEST
from emoneuron.rundir import RunDir
from emoneuron.selection.neurons import NeuronSets
from emoneuron.version import __version__

log = logging.getLogger(__name__)
T = TypeVar("T")


def reused(run_dir: RunDir, stage: str, inputs: str, read: Callable[[], T],
           compute: Callable[[], tuple[T, Sequence[str]]]) -> T:
    """A stage's result: read back by ``read`` where ``stage`` finished in ``run_dir`` from
    these ``inputs`` (a :func:`~emoneuron.io.content_hash`) and its files are unchanged; else
    from ``compute``, which writes the stage's files and returns the result and the files'
    names, and the stage is marked finished with them (a compute that wrote no file leaves it
    unfinished, to run again)."""
    if run_dir.stage_done(stage, inputs):
        return read()
    result, files = compute()
    if files:
        run_dir.stage_finished(stage, inputs, files)
    return result


def store_context(evaluation: Sequence[Record], sets: NeuronSets, model: str,
                  classifier: Classifier) -> str:
    """What a condition store's predictions depend on besides their condition: the
    evaluation dialogues, the neurons, the model and the prompt with its few-shot examples.
    A store written under another context is refused, never mixed in."""
    return content_hash({"eval": records_hash(list(evaluation)), "neurons": sets.to_json(),
                         "model": model, "prompt": classifier.description,
                         "shots": [shot.id for shot in classifier.shots]})


# Settings that change how fast a run goes, not what it finds: a run may resume with others.
RESUMABLE_WITH_OTHER = frozenset({"device", "threads", "batch_size", "executor", "ray_address",
                                  "workers", "cpus_per_worker", "gpus_per_worker", "shards",
                                  "preset", "kernel"})  # kernel: bit-identical statistics


def previous_run(run_dir: RunDir, config: RunConfig) -> dict[str, Any] | None:
    """The manifest of the run ``run_dir`` already holds (None when it holds none); refused
    when written by another version or with other settings. A damaged manifest of this
    version (cut, or lacking a section) is what readers tell the user to rerun the run for:
    the run resumes without comparing settings, reusing only stages and conditions whose
    inputs' hashes match, and writes the manifest anew."""
    if not run_dir.exists(MANIFEST):
        return None
    version = run_dir.written_by()
    if version not in (None, __version__):
        raise UserError(f"{run_dir.path}: written by emoneuron {version}, this is "
                        f"{__version__}; use a new --out directory")
    problem = run_dir.manifest_problem()
    if problem:
        log.warning("%s: %s; resuming without comparing this command's settings with the run's "
                    "(finished stages are reused only where their inputs' hashes match)",
                    run_dir.file(MANIFEST), problem)
        return None
    previous = run_dir.manifest()
    ours = json.loads(json.dumps(asdict(config)))  # tuples as lists, as the manifest holds them
    # A setting added since the run was written ran as its default did.
    defaults = json.loads(json.dumps(asdict(RunConfig())))
    for key, (theirs, mine) in _differences(_over(defaults, previous.get("config", {})),
                                            ours).items():
        if _added_step(key, theirs, mine):
            continue
        raise UserError(f"{run_dir.path}: holds a run with {key} = {json.dumps(theirs)}, this "
                        f"command has {json.dumps(mine)}; rerun with the same options to "
                        "resume, or use a new --out directory")
    return previous


# Steps a resumed run may add, with their settings: each writes files of its own, recomputed
# whenever its inputs change, and changes no other result. Turning one off is refused (its
# files would stay in the run).
ADDABLE_STEPS = {"steer_judges": ("steer_null_draws",)}


def _added_step(key: str, theirs: Any, mine: Any) -> bool:
    """Whether a difference in setting ``key`` only adds a step or sets an added step's
    settings.

    >>> _added_step("steer_judges", False, True), _added_step("steer_judges", True, False)
    (True, False)
    >>> _added_step("steer_null_draws", 4, 10), _added_step("null_sets", 4, 10)
    (True, False)
    """
    if key in ADDABLE_STEPS:
        return not theirs and bool(mine)
    return any(key in settings for settings in ADDABLE_STEPS.values())


def _over(defaults: Any, given: Any) -> Any:
    """``given`` with every key it lacks taken from ``defaults``, in nested dicts too."""
    if not (isinstance(defaults, dict) and isinstance(given, dict)):
        return given
    return {**defaults, **{key: _over(defaults.get(key), value) for key, value in given.items()}}


def _differences(theirs: Any, mine: Any, at: str = "") -> dict[str, tuple[Any, Any]]:
    """Settings (dotted names) that differ, apart from RESUMABLE_WITH_OTHER."""
    if not (isinstance(theirs, dict) and isinstance(mine, dict)):
        return {} if theirs == mine else {at: (theirs, mine)}
    found: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(theirs) | set(mine), key=str):
        if key not in RESUMABLE_WITH_OTHER:
            found |= _differences(theirs.get(key), mine.get(key), f"{at}.{key}" if at else key)
    return found
