"""Recordings cached under everything they depend on, so a second identical request is free.

Key: SHA-256 of the model's weights (every parameter's name, dtype, shape and bytes), the data
(:func:`~emoneuron.data.schema.records_hash`), the :class:`RecordConfig` but its batch size
(site, token policy, grouping and top-k settings, and whether residual means are kept, so an
entry recorded without them never answers a request for them), and the code version
(emoneuron's version, the recording format and :func:`code_hash`, so a changed recorder never
reads an old result).
The files live in ``$EMONEURON_CACHE/stats/KEY.safetensors`` (see
:func:`~emoneuron.models.loading.cache_root`). Each entry carries the hash of its statistics,
checked on every read: a cut or changed entry is recorded again, with one warning line.
Hashing the weights reads them once per call: about a second for SmolLM2-135M on a CPU. A
cache that cannot be written costs only the reuse: the recording is returned all the same.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from emoneuron.data.schema import Record, records_hash
from emoneuron.errors import UserError
from emoneuron.executors import Executor, LocalExecutor
from emoneuron.io import content_hash
from emoneuron.models.loading import LoadedModel, cache_root, warn_uncached
from emoneuron.recording import accumulator, kernel, recorder, statistics
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record_sharded
from emoneuron.recording.statistics import RECORDING_FORMAT, Recording
from emoneuron.version import __version__


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy())
    return digest.hexdigest()


def code_hash() -> str:
    """A hash of the recorder's, the accumulator's, the kernel's and the statistics' code as
    parsed, without docstrings or comments (the C source as it is): an edit of their prose
    keeps the cache, any change of what they compute drops it."""
    digest = hashlib.sha256(kernel.SOURCE.read_bytes())
    for module in (recorder, accumulator, kernel, statistics):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body[0] = ast.Pass()
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:16]


def recording_key(loaded: LoadedModel, records: Sequence[Record], config: RecordConfig) -> str:
    parts = {"weights": weights_hash(loaded.model), "data": records_hash(list(records)),
             "site": config.site, "token_policy": config.token_policy, "groups": config.groups,
             "top_k": config.top_k, "group_seed": config.group_seed,
             "residual": config.residual,
             "code": f"{__version__}/{RECORDING_FORMAT}/{code_hash()}"}
    return content_hash(parts)[:32]


def cached_record(loaded: LoadedModel, records: Sequence[Record],
                  config: RecordConfig = RecordConfig(), progress: bool = True,
                  cache_dir: str | Path | None = None, executor: Executor | None = None,
                  shards: int = 1, setup: Callable[[], LoadedModel] | None = None) -> Recording:
    """:func:`~emoneuron.recording.recorder.record_sharded` (by default one pass in this process),
    or its cached result for the same inputs. Shards and executors change only float rounding, so
    they share the cache entry."""
    key = recording_key(loaded, records, config)
    path = Path(cache_dir) if cache_dir is not None else cache_root() / "stats"
    path = path / f"{key}.safetensors"
    cached = _cached(path)
    if cached is not None:
        return cached
    recording = record_sharded(executor or LocalExecutor(), loaded, records, shards, setup,
                               config, progress)
    try:
        recording.save(path, {"model": loaded.name, "data_hash": records_hash(list(records)),
                              "cache_key": key})
    except OSError as error:
        warn_uncached(path, error)
    return recording


def _cached(path: Path) -> Recording | None:
    """The recording cached at ``path``; None when there is none or it is damaged (cut, or
    its statistics differing from the hash saved with them), which is said in one line: the
    caller records again and replaces the entry."""
    if not path.is_file():
        return None
    try:
        return Recording.load(path, require_digest=True)
    except UserError as error:
        reason = str(error).removeprefix(f"{path}: ").split(";")[0]
        print(f"warning: {path}: damaged cache entry ({reason}); recording again",
              file=sys.stderr, flush=True)
        return None
