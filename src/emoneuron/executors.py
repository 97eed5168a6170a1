"""Where the expensive steps run: in this process (``local``) or on the workers of a Ray cluster.

Recording and the sweep hand an executor the same three things: a ``setup`` that builds a
worker's state once (loads the model, builds the classifier), a ``task(state, item)`` (record one
shard of dialogues, evaluate one condition) and the items. Results come back to this process
through ``deliver(index, result)`` exactly once per item and in item order, so what is written
from them (merged statistics, ``conditions.jsonl``) is the same whichever executor ran them.

The Ray executor starts one actor per model replica: one GPU each by default, ``gpus_per_worker``
GPUs for a model larger than one GPU (the model is then spread over them with
``device_map="auto"``), or ``cpus_per_worker`` cores on a CPU-only cluster. A worker that dies
(killed, out of memory, its node lost) is restarted by Ray, which reloads its state and runs the
lost task again; a result is delivered once, so nothing is counted twice or lost. An exception
raised by a task itself is not retried: it would fail again the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from tqdm.auto import tqdm

from emoneuron.errors import UserError
from emoneuron.options import as_given, at_least, changed_fields, check_fields, flag

State = TypeVar("State")
Item = TypeVar("Item")
Result = TypeVar("Result")

ExecutorName = Literal["local", "ray"]
RESTARTS = 3  # times Ray restarts a dead worker, and retries the task it lost, before failing
QUEUED_PER_WORKER = 2  # tasks handed to a worker ahead of time, so it never waits for the next


class Executor(Protocol):
    @property
    def workers(self) -> int:
        """How many workers run tasks at once (model replicas)."""

    @property
    def gpus_per_worker(self) -> float:
        """GPUs each worker holds (0: it computes on CPUs)."""

    def map(self, task: Callable[[State, Item], Result], items: Sequence[Item],
            deliver: Callable[[int, Result], None], setup: Callable[[], State] | None,
            state: State | None = None, progress: bool = True, desc: str = "tasks") -> None:
        """Run ``task(state, item)`` for every item; ``deliver(index, result)`` each result in
        item order. ``setup`` must be picklable for remote workers; ``state`` is one already
        built in this process, which a local executor uses instead of calling ``setup``."""


class LocalExecutor:
    """Everything in this process, one item after another."""

    workers = 1
    gpus_per_worker = 0.0

    def map(self, task: Callable[[State, Item], Result], items: Sequence[Item],
            deliver: Callable[[int, Result], None], setup: Callable[[], State] | None,
            state: State | None = None, progress: bool = True, desc: str = "tasks") -> None:
        if state is None:
            if setup is None:
                raise ValueError("a local executor needs a state or a setup")
            state = setup()
        for index, item in enumerate(tqdm(items, desc=desc, disable=not progress)):
            deliver(index, task(state, item))


@dataclass(frozen=True)
class ExecutorConfig:
    """Where recording and the conditions run (:func:`executor_for`).

    >>> ExecutorConfig("ray", workers=2).cpus_per_worker
    1

    Args:
        executor: this process (local), or the workers of a Ray cluster (ray); the options
            below are for ray only (given with local they are refused, not ignored)
        ray_address: the Ray cluster: local starts a private one on this machine, auto joins
            the one this machine belongs to, HOST:PORT a remote head
        workers: Ray workers (model replicas); 0 = one per GPU, or per cpus_per_worker CPUs
        cpus_per_worker: CPU cores each Ray worker holds
        gpus_per_worker: GPUs each Ray worker holds (a model larger than one GPU spreads over
            them); unset: 1 on a cluster with GPUs, else 0
        shards: dialogue shards of a recording, each a task; 0 = 4 per Ray worker
    """

    executor: ExecutorName = "local"
    ray_address: str = "local"
    workers: int = 0
    cpus_per_worker: int = 1
    gpus_per_worker: float | None = None
    shards: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        at_least("workers", self.workers, 0)
        at_least("cpus_per_worker", self.cpus_per_worker, 1)
        at_least("gpus_per_worker", 0 if self.gpus_per_worker is None else self.gpus_per_worker,
                 0)
        at_least("shards", self.shards, 0)
        # The local executor reads none of these: a --workers 4 given without --executor ray
        # would run one process while the user believes it ran four.
        ignored = changed_fields(self, RAY_ONLY)
        if self.executor == "local" and ignored:
            raise UserError(f"{as_given(ignored[0], getattr(self, ignored[0]))}: applies only "
                            "to --executor ray (the local executor would ignore it); add "
                            f"--executor ray, or drop {flag(ignored[0])}")


# The ExecutorConfig fields only the Ray executor reads.
RAY_ONLY = frozenset({"ray_address", "workers", "cpus_per_worker", "gpus_per_worker", "shards"})


class _Worker:
    """A Ray actor body: the state built once, then one task per call."""

    def __init__(self, setup: Callable[[], Any], threads: int) -> None:
        import torch

        # Ray sets OMP_NUM_THREADS from the actor's CPUs; torch must use the same count,
        # or workers sharing a node oversubscribe its cores.
        torch.set_num_threads(threads)
        self.state: Any = None
        self.setup_error: Exception | None = None
        try:
            self.state = setup()
        except Exception as error:
            # Kept for every task to raise, so the driver sees it as itself (an unknown
            # model stays a UserError); a failed actor creation would say only that it died.
            self.setup_error = error

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Callable[[Any, Any], Any], item: Any) -> Any:
        if self.setup_error is not None:
            raise self.setup_error
        return task(self.state, item)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'emoneuron[ray]'") from None
    return ray


class RayExecutor:
    """Tasks on a pool of Ray actors, each holding the state built by ``setup``."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self._ray = _ray()
        self._started_here = False
        self._pool: tuple[Callable[[], Any], list[Any]] | None = None
        self.pids: list[int] = []  # worker processes of the latest map, for monitoring

    def connect(self) -> None:
        if self._ray.is_initialized():
            return
        local = self.config.ray_address == "local"
        # A private cluster gets the workers' CPUs, or, with workers 0, all of this machine's.
        cpus = self.config.workers * self.config.cpus_per_worker or None if local else None
        try:
            self._ray.init(address=None if local else self.config.ray_address, num_cpus=cpus,
                           include_dashboard=False, log_to_driver=False,
                           configure_logging=False)
        except ConnectionError as error:
            raise UserError(f"no Ray cluster at {self.config.ray_address!r} ({error}); start "
                            "one with `ray start --head` or use --ray-address local") from None
        self._started_here = True

    def close(self) -> None:
        self.release()
        if self._started_here:
            self._ray.shutdown()
            self._started_here = False

    def _resources(self) -> dict[str, float]:
        """The cluster's resources (joined or started first: Ray answers only when connected)."""
        self.connect()
        return dict(self._ray.cluster_resources())

    @property
    def gpus_per_worker(self) -> float:
        if self.config.gpus_per_worker is not None:
            return self.config.gpus_per_worker
        return 1.0 if self._resources().get("GPU", 0) > 0 else 0.0

    @property
    def workers(self) -> int:
        if self.config.workers:
            return self.config.workers
        resources = self._resources()
        if self.gpus_per_worker:
            return max(int(resources.get("GPU", 0) // self.gpus_per_worker), 1)
        return max(int(resources.get("CPU", 1) // self.config.cpus_per_worker), 1)

    def map(self, task: Callable[[State, Item], Result], items: Sequence[Item],
            deliver: Callable[[int, Result], None], setup: Callable[[], State] | None,
            state: State | None = None, progress: bool = True, desc: str = "tasks") -> None:
        del state  # built in this process: remote workers build their own
        if setup is None:
            raise UserError("this model was built in memory, so Ray workers cannot load it: "
                            "save it with save_pretrained and pass the directory")
        if not items:
            return
        self.connect()
        actors = self._actors(setup, min(self.workers, len(items)))
        self.pids = self._get([actor.pid.remote() for actor in actors])
        self._run(actors, task, items, deliver, progress, desc)

    def _actors(self, setup: Callable[[], Any], count: int) -> list[Any]:
        """Workers holding ``setup``'s state: those of the previous map when its setup was
        equal (the sweep's two stages share their loaded models), else new ones."""
        if self._pool is not None and self._pool[0] == setup and len(self._pool[1]) >= count:
            return self._pool[1][:count]
        self.release()
        actor_class = self._ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS)(_Worker)
        actors = [actor_class.options(num_cpus=self.config.cpus_per_worker,
                                      num_gpus=self.gpus_per_worker).remote(
                                          setup, self.config.cpus_per_worker)
                  for _ in range(count)]
        self._pool = (setup, actors)
        return actors

    def release(self) -> None:
        """Stop the workers kept for the next map, giving their CPUs and GPUs back."""
        if self._pool is not None:
            for actor in self._pool[1]:
                self._ray.kill(actor)
            self._pool = None

    def _run(self, actors: list[Any], task: Callable[[State, Item], Result],
             items: Sequence[Item], deliver: Callable[[int, Result], None], progress: bool,
             desc: str) -> None:
        ray = self._ray
        waiting = iter(range(len(items)))
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (item index, actor)
        load = [0] * len(actors)
        finished: dict[int, Result] = {}  # results that arrived ahead of an earlier item
        next_to_deliver = 0
        bar = tqdm(total=len(items), desc=f"{desc} ({len(actors)} Ray workers)",
                   disable=not progress)

        def hand_out() -> None:
            for worker in range(len(actors)):
                while load[worker] < QUEUED_PER_WORKER:
                    index = next(waiting, None)
                    if index is None:
                        return
                    running[actors[worker].run.remote(task, items[index])] = (index, worker)
                    load[worker] += 1

        hand_out()
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            index, worker = running.pop(done[0])
            load[worker] -= 1
            finished[index] = self._get(done[0])
            bar.update(1)
            hand_out()
            while next_to_deliver in finished:
                deliver(next_to_deliver, finished.pop(next_to_deliver))
                next_to_deliver += 1
        bar.close()

    def _get(self, refs: Any) -> Any:
        """``ray.get``, with a task's own exception raised as itself (a UserError stays one)
        and a worker lost more than RESTARTS times said in one line."""
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(refs)
        except exceptions.RayTaskError as error:
            raise error.cause from None
        except exceptions.RayActorError as error:
            raise RuntimeError(f"a Ray worker died more than {RESTARTS} times (last: "
                               f"{str(error).strip().splitlines()[0][:200]}); check its "
                               "memory and the worker logs under /tmp/ray") from None


@contextmanager
def executor_for(config: ExecutorConfig) -> Iterator[LocalExecutor | RayExecutor]:
    """The executor ``config`` names; a Ray cluster started for it is stopped on exit."""
    if config.executor == "local":
        yield LocalExecutor()
        return
    executor = RayExecutor(config)
    try:
        yield executor
    finally:
        executor.close()
