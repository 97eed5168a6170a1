"""The Ray executor on a private two-worker cluster on this machine: recording, a sweep and a
whole run give what the local executor gives, also when a worker is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from emoneuron.app.run import run
from emoneuron.causal.conditions.grid import grid
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.execution import EvaluationSetup, Sources, execute
from emoneuron.causal.evaluation.probe import Probe
from emoneuron.causal.experiments.directions import EmotionDirections
from emoneuron.config import preset_config
from emoneuron.data.schema import Record
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.executors import ExecutorConfig, LocalExecutor, RayExecutor
from emoneuron.models.loading import LoadedModel, ModelSpec, load
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record, record_sharded
from emoneuron.recording.statistics import Recording
from emoneuron.selection.identify import IdentifyConfig, identify

ray = pytest.importorskip("ray")

WORKERS = 2


class KillingRayExecutor(RayExecutor):
    """Kills its first worker (SIGKILL) when the first result arrives: that worker still holds
    queued tasks, which Ray must run again on the restarted worker."""

    def __init__(self, config: ExecutorConfig) -> None:
        super().__init__(config)
        self.killed: list[int] = []
        self.delivered: list[int] = []

    def map(self, task: Callable[[Any, Any], Any], items: Sequence[Any],
            deliver: Callable[[int, Any], None], setup: Callable[[], Any] | None,
            state: Any = None, progress: bool = True, desc: str = "tasks") -> None:
        def kill_then_deliver(index: int, result: Any) -> None:
            if not self.killed:
                os.kill(self.pids[0], signal.SIGKILL)
                self.killed.append(self.pids[0])
            self.delivered.append(index)
            deliver(index, result)

        super().map(task, items, kill_then_deliver, setup, state, progress, desc)


@pytest.fixture(scope="module")
def executor() -> Iterator[KillingRayExecutor]:
    killing = KillingRayExecutor(ExecutorConfig("ray", "local", workers=WORKERS))
    killing.connect()
    yield killing
    killing.close()


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path) -> LoadedModel:
    return load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def dialogues() -> list[Record]:
    return synthesize(6, seed=3, max_turns=2)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Workers compute with one thread each; so does this process, for equal float sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_same_recording(ours: Recording, theirs: Recording) -> None:
    """Equal up to float rounding. Which dialogue holds a top activation is left out: two
    dialogues whose values differ in the last bit can swap when batches differ."""
    for name in ("tokens", "active", "sum", "sum_sq", "top_values"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=1e-5,
                                   atol=1e-6, msg=name)
    assert torch.equal(ours.histogram, theirs.histogram)


def test_recording_on_ray_equals_one_local_pass_after_a_worker_is_killed(
        executor: KillingRayExecutor, loaded: LoadedModel, tiny_model_dir: Path,
        dialogues: list[Record]) -> None:
    local = record(loaded, dialogues, RecordConfig(batch_size=4), progress=False)
    on_ray = record_sharded(executor, loaded, dialogues, 8, ModelSpec(str(tiny_model_dir)).load,
                            RecordConfig(batch_size=4), progress=False)
    assert executor.killed, "no worker was killed: the test did not test recovery"
    assert executor.delivered == list(range(8))  # every shard merged exactly once, in order
    _assert_same_recording(on_ray, local)
    same_shards_here = record_sharded(LocalExecutor(), loaded, dialogues, 8,
                                      config=RecordConfig(batch_size=4), progress=False)
    for name in ("tokens", "active", "sum", "sum_sq", "histogram", "top_values", "top_dialogue"):
        assert torch.equal(getattr(on_ray, name), getattr(same_shards_here, name)), name


def test_sweep_on_ray_stores_what_the_local_sweep_stores_after_a_worker_is_killed(
        executor: KillingRayExecutor, loaded: LoadedModel, tiny_model_dir: Path,
        dialogues: list[Record], tmp_path: Path) -> None:
    shots = order_shots(dialogues, seed=0)
    evaluation = [r for r in dialogues if r not in shots]
    classifier = Classifier(loaded, shots, batch_size=8)
    recording = record(loaded, evaluation, progress=False)
    sets = identify(recording, IdentifyConfig(assignment="argmax", share=0.05), "tiny")
    sources = Sources(recording.stats())
    conditions = grid(Design(control_seeds=(0,), controls=("random",), proportions=(0.5, 1.0),
                             dose_strengths=()))
    stores = {name: ConditionStore(tmp_path / f"{name}.jsonl", "context")
              for name in ("local", "ray")}
    execute(classifier, sets, sources, evaluation, conditions, stores["local"], progress=False)
    executor.killed.clear()
    executor.delivered.clear()
    setup = EvaluationSetup.of(classifier, ModelSpec(str(tiny_model_dir)), evaluation)
    execute(classifier, sets, sources, evaluation, conditions, stores["ray"], progress=False,
            executor=executor, setup=setup)
    assert executor.killed
    assert executor.delivered == list(range(len(conditions)))
    lines = {name: (tmp_path / f"{name}.jsonl").read_text().splitlines() for name in stores}
    assert len(lines["ray"]) == len(conditions)
    assert lines["ray"] == lines["local"]  # same conditions, predictions and order


def test_a_task_error_on_a_worker_is_raised_here_as_itself(executor: KillingRayExecutor,
                                                           tiny_model_dir: Path) -> None:
    executor.killed.append(0)  # nothing to kill here

    def refuse(_state: LoadedModel, item: int) -> int:
        raise UserError(f"item {item} is bad")

    with pytest.raises(UserError, match="item 0 is bad"):
        executor.map(refuse, [0, 1], lambda index, result: None,
                     ModelSpec(str(tiny_model_dir)).load, progress=False)


def test_an_in_memory_model_cannot_go_to_ray_workers(executor: KillingRayExecutor,
                                                     loaded: LoadedModel) -> None:
    with pytest.raises(UserError, match="save it with save_pretrained"):
        record_sharded(executor, loaded, synthesize(1, seed=0), shards=2, progress=False)


def _assert_same_sets(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """The same neurons in the same order for every emotion, and the same settings; scores
    equal up to float rounding."""
    assert {k: v for k, v in ours.items() if k != "emotions"} == {
        k: v for k, v in theirs.items() if k != "emotions"}
    assert ours["emotions"].keys() == theirs["emotions"].keys()
    for emotion, neurons in ours["emotions"].items():
        expected = theirs["emotions"][emotion]
        assert [(n["layer"], n["index"]) for n in neurons] == [
            (n["layer"], n["index"]) for n in expected], emotion
        assert [n["score"] for n in neurons] == pytest.approx(
            [n["score"] for n in expected], rel=1e-5), emotion


def _outputs(run_dir: Path) -> dict[str, Path]:
    skip = {"manifest.json", "report.html"}  # timings and the settings that chose the executor
    return {str(p.relative_to(run_dir)): p for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in skip and "figures" not in p.parts}


def test_a_ray_run_writes_the_files_of_a_local_run(executor: KillingRayExecutor,
                                                   tiny_model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"model": str(tiny_model_dir), "per_emotion": 6, "max_turns": 2, "share": 0.05,
               "proportions": (0.5, 1.0), "control_seeds": (0,), "dose_strengths": (0.0,),
               "batch_size": 8, "steer": False, "threads": 1, "null_sets": 2,
               "scopes": ("all", "last"), "cross_per_emotion": 1}
    executor.release()  # the run starts its own workers on the same two CPUs
    runs = {}
    for name, changes in (("local", {}), ("ray", {"executor": "ray", "workers": WORKERS})):
        monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / f"cache-{name}"))  # record anew
        runs[name] = tmp_path / name
        run(preset_config(**options, **changes), runs[name], progress=False)
    local, on_ray = _outputs(runs["local"]), _outputs(runs["ray"])
    assert sorted(local) == sorted(on_ray)
    for name, path in local.items():
        if path.suffix == ".csv":
            pd.testing.assert_frame_equal(pd.read_csv(on_ray[name]), pd.read_csv(path),
                                          rtol=1e-5)
        elif path.name.startswith("attribution-") and path.suffix == ".safetensors":
            # Computed by the driver in both runs.
            torch.testing.assert_close(AttributionStats.load(on_ray[name]).total,
                                       AttributionStats.load(path).total, rtol=1e-5, atol=1e-8)
        # The probe and the directions are fitted by the driver in both runs, on the
        # recording's residual means: sharded on Ray, equal up to float rounding.
        elif path.name == "probe.safetensors":
            torch.testing.assert_close(Probe.load(on_ray[name]).weight, Probe.load(path).weight)
        elif path.name == "directions.safetensors":
            torch.testing.assert_close(EmotionDirections.load(on_ray[name]).difference,
                                       EmotionDirections.load(path).difference)
        elif name == "methods/direction-projection/neurons.json":  # scored on the directions
            _assert_same_sets(json.loads(on_ray[name].read_text()), json.loads(path.read_text()))
        elif path.suffix == ".safetensors":
            _assert_same_recording(Recording.load(on_ray[name]), Recording.load(path))
        elif name == "probe_conditions.jsonl":  # its context hashes the probe file
            for ours, theirs in zip(on_ray[name].open(), path.open(), strict=True):
                torch.testing.assert_close(torch.tensor(json.loads(ours)["predictions"]),
                                           torch.tensor(json.loads(theirs)["predictions"]))
        elif name not in ("stats.json", "stages.json", "probe.json"):  # hashes: float rounding
            assert on_ray[name].read_bytes() == path.read_bytes(), name
    manifest = json.loads((runs["ray"] / "manifest.json").read_text())
    assert manifest["execution"] == {"executor": "ray", "workers": WORKERS,
                                     "gpus_per_worker": 0.0, "recording_shards": 4 * WORKERS,
                                     "ray_version": ray.__version__}


def test_a_model_workers_cannot_load_is_a_user_error(executor: KillingRayExecutor) -> None:
    with pytest.raises(UserError, match="unknown model"):
        executor.map(lambda state, item: item, [0], lambda index, result: None,
                     ModelSpec("no-such-model").load, progress=False)


def test_cli_record_on_ray_writes_the_local_statistics(executor: KillingRayExecutor,
                                                       tiny_model_dir: Path, tmp_path: Path,
                                                       dialogues: list[Record]) -> None:
    from emoneuron.cli import main
    from emoneuron.data.schema import write_records

    executor.release()  # the command starts its own workers on the same two CPUs
    data = tmp_path / "dialogues.jsonl"
    write_records(data, dialogues)
    common = ["record", "--model", str(tiny_model_dir), "--data", str(data), "--batch-size", "4"]
    assert main([*common, "--out", str(tmp_path / "local.safetensors")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray.safetensors"), "--executor", "ray",
                 "--workers", "2", "--shards", "3"]) == 0
    _assert_same_recording(Recording.load(tmp_path / "ray.safetensors"),
                           Recording.load(tmp_path / "local.safetensors"))


def test_cli_unknown_executor_is_exit_2(tiny_model_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from emoneuron.cli import main

    code = main(["run", "--model", str(tiny_model_dir), "--out", str(tmp_path / "run"),
                 "--executor", "dask"])
    assert code == 2
    assert "--executor 'dask': use one of local, ray" in capsys.readouterr().err


class _UnstartedRay:
    """Ray's module as far as the executor's sizing uses it: its state API answers only once
    ``init`` has joined (or started) a cluster, as Ray's does."""

    def __init__(self) -> None:
        self.started = False

    def is_initialized(self) -> bool:
        return self.started

    def init(self, **_: object) -> None:
        self.started = True

    def cluster_resources(self) -> dict[str, float]:
        if not self.started:
            raise RuntimeError("Ray has not been started yet")
        return {"CPU": 4.0}


def test_the_executor_joins_its_cluster_before_sizing_its_workers() -> None:
    """``run --executor ray`` without --workers once failed with Ray's traceback: the run asked
    for the worker count before anything had joined the cluster."""
    executor = RayExecutor(ExecutorConfig("ray"))
    executor._ray = _UnstartedRay()
    assert (executor.workers, executor.gpus_per_worker) == (4, 0.0)
