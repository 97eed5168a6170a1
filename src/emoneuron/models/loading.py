"""Load a causal LM by embedded name, directory, ``.gguf`` file or hub id, with a conversion cache.

GGUF checkpoints are de-quantised by transformers on every load (tens of seconds). The first load
checks an embedded model's GGUF against the SHA-256 its row pins (:meth:`EmbeddedModel.gguf`) and
converts it into a standard Hugging Face directory (safetensors + tokenizer) under
``$EMONEURON_CACHE`` (default ``~/.cache/emoneuron``); later loads read that directory in about a
second. transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the conversion builds a
fresh model from the config, loads the state dict into it and saves that. A cache that cannot be
written is reported in one line and the conversion goes to a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from emoneuron.errors import UserError
from emoneuron.io import check_output_dir, sha256_bytes
from emoneuron.models.adapters import Adapter, adapter_for, adapter_for_architecture
from emoneuron.models.config import AUTO_DEVICE, check_device, check_model
from emoneuron.models.config import DEFAULT_MODEL as DEFAULT_MODEL

# DEFAULT_MODEL and cache_root are re-exported: the loaders' callers have always found them here.
from emoneuron.models.embedded import EMBEDDED, cached_directory
from emoneuron.models.embedded import cache_root as cache_root


@dataclass
class LoadedModel:
    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    directory: Path | None
    instruct: bool

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers(self.model)

    @property
    def width(self) -> int:
        return self.adapter.width(self.model)

    @property
    def hidden(self) -> int:
        """The residual stream's size."""
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def context_length(self) -> int:
        """Tokens the model's position embeddings cover."""
        return _context_length(self.model.config)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device. A model dispatched over several
        devices (``device_map``) has its first parameters wherever its map says, not
        necessarily where the input ids are looked up."""
        return compute_device(self.model.get_input_embeddings())


@dataclass(frozen=True)
class ModelTokenizer:
    """A model's tokenizer and what its name and config say, without its weights
    (:func:`load_tokenizer`, a fraction of a second): what a command builds and checks its
    prompts with before :func:`load` reads the weights."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    directory: Path | None
    instruct: bool
    context_length: int  # tokens the model's position embeddings cover


def compute_device(module: torch.nn.Module) -> torch.device:
    """The device ``module`` computes on: its accelerate hook's execution device where the model
    was dispatched with a ``device_map`` (an offloaded module's weights sit on the meta device
    until its hook loads them there), else the device of its first parameter."""
    hook = getattr(module, "_hf_hook", None)
    execution_device = getattr(hook, "execution_device", None)
    if execution_device is not None:
        return torch.device(execution_device)
    return next(module.parameters()).device


def warn_uncached(path: Path, error: OSError) -> None:
    """Say in one line that ``path`` in the cache cannot be written: the work goes on and its
    result is used, only not kept for the next run."""
    print(f"warning: {path}: cannot write to the cache ({error.strerror or error}); going on "
          "without caching (set EMONEURON_CACHE to a writable directory to keep results)",
          file=sys.stderr, flush=True)


@functools.cache
def _session_dir() -> Path:
    """A folder for conversions the cache cannot hold, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="emoneuron-uncached-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def resolve_device(device: str) -> str:
    """The device ``auto`` stands for here: CUDA where present, else MPS, else the CPU; any
    other device as it is."""
    if device != AUTO_DEVICE:
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    # These CPUs have no bfloat16 units: float32 is the fast path there, bfloat16 on GPUs.
    return torch.float32 if device == "cpu" else torch.bfloat16


DeviceMap = str | dict[str, int | str | torch.device]


@contextmanager
def _loading_bars(shown: bool) -> Iterator[None]:
    """transformers' own progress bars while loading: left as they are, or off (a quiet
    command) and switched back on afterwards, so nothing outside this load changes."""
    if shown or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> ModelTokenizer:
    """A model's tokenizer (a pad token set where it has none) and its context length, read
    without the weights; an embedded model is converted once first (:func:`resolve`). A model
    whose class no adapter knows is refused here, from its config, so no command reads the
    weights of a model it cannot use.

    >>> load_tokenizer("smollm2-135m").tokenizer.encode(" anger")  # doctest: +SKIP
    [4191]
    """
    directory, instruct = resolve(name_or_path)
    source = str(directory) if directory is not None else name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
    except Exception as error:
        failure = _load_failure(error, name_or_path, directory)
        if failure is error:
            raise
        raise failure from error
    # The class AutoModelForCausalLM builds for this config; one it does not know is left to
    # the weights' load, which says so.
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
    if architecture is not None:
        adapter_for_architecture(architecture)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return ModelTokenizer(name_or_path, tokenizer, directory, instruct,
                          _context_length(config))


def _context_length(config: PretrainedConfig) -> int:
    return int(config.get_text_config().max_position_embeddings)


def _load_failure(error: Exception, name_or_path: str, directory: Path | None,
                  device_map: DeviceMap | None = None) -> Exception:
    """The one line a failed load of ``name_or_path`` (from ``directory``, None for a hub id)
    is told as; ``error`` itself where it is no fault of the user's model."""
    reason = f"{error.__class__.__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
    source = str(directory) if directory is not None else name_or_path
    if directory is not None and _is_cached_conversion(directory):
        # emoneuron wrote this directory (a GGUF conversion), so it is ours to call broken:
        # truncated weights, a garbage config.json, a conversion cut short by a full disk.
        return UserError(
            f"{directory}: cached conversion of {name_or_path!r} does not load ({reason}); "
            "delete this directory and run again to convert the model anew")
    if device_map is not None and not isinstance(error, OSError):  # OSError: no model
        return UserError(f"{source}: does not load with device_map {device_map!r} ({reason}); "
                         "check the device map, or load without one")
    if directory is not None:
        return UserError(f"{directory}: does not load as a causal language model ({reason}); "
                         "check its config.json and weight files")
    if not isinstance(error, OSError):
        return error
    return UserError(
        f"model {name_or_path!r} is neither an embedded model ({', '.join(EMBEDDED)}), "
        "a model directory, a .gguf file, nor reachable on the hub "
        f"({error.__class__.__name__}); check the name or pass a local path")


def load(name_or_path: str = DEFAULT_MODEL, device: str = "cpu",
         dtype: torch.dtype | None = None, device_map: DeviceMap | None = None,
         offload_folder: str | Path | None = None, progress: bool = True,
         tokenizer: ModelTokenizer | None = None) -> LoadedModel:
    """Load a model and its tokenizer, ready for recording and evaluation (eval mode); with
    ``progress`` false, transformers' loading bars stay off (restored afterwards).
    ``tokenizer``: what :func:`load_tokenizer` read for this model, reused (a command checks
    its prompts with it before the weights load).

    ``device`` ``"auto"`` is CUDA where present, else MPS, else the CPU (:func:`resolve_device`).
    ``device_map`` (``"auto"``, or a dict of module name to device, ``"cpu"`` or ``"disk"``)
    lets accelerate place the layers, e.g. across all visible GPUs for a model larger than one;
    ``device`` then only picks the default dtype, and ``offload_folder`` is where layers mapped
    to ``"disk"`` are kept.

    >>> loaded = load("smollm2-135m")  # doctest: +SKIP
    >>> loaded.n_layers, loaded.width  # doctest: +SKIP
    (30, 1536)
    """
    device = resolve_device(device)
    if device_map is None:  # with a map, ``device`` only picks the dtype
        check_device(device)
    if tokenizer is None:
        tokenizer = load_tokenizer(name_or_path)
    elif tokenizer.name != name_or_path:
        raise ValueError(f"load: tokenizer is {tokenizer.name!r}'s, not {name_or_path!r}'s")
    directory = tokenizer.directory
    source = str(directory) if directory is not None else name_or_path
    placement: dict[str, object] = {} if device_map is None else {
        "device_map": device_map, "offload_folder": offload_folder}
    try:
        with _loading_bars(progress):
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype or default_dtype(device), **placement)
    except Exception as error:
        failure = _load_failure(error, name_or_path, directory, device_map)
        if failure is error:
            raise
        raise failure from error
    if device_map is None:  # a dispatched model stays where accelerate put each layer
        model.to(device)  # type: ignore[arg-type]  # transformers' stubs reject a str device
    torch.nn.Module.eval(model)
    return LoadedModel(name=name_or_path, model=model, tokenizer=tokenizer.tokenizer,
                       adapter=adapter_for(model), directory=directory,
                       instruct=tokenizer.instruct)


def resolve(name_or_path: str) -> tuple[Path | None, bool]:
    """A local Hugging Face directory for the model (converting GGUF once), or None for hub ids."""
    check_model(name_or_path)
    if name_or_path in EMBEDDED:
        embedded = EMBEDDED[name_or_path]
        target = cached_directory(name_or_path)
        return _cached_conversion(target.name, embedded.gguf), embedded.instruct
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        stat = path.stat()
        key = sha256_bytes(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())[:16]
        return _cached_conversion(f"{path.stem}-{key}", lambda _: path), _looks_instruct(path.name)
    if path.is_dir():
        return path, _looks_instruct(path.name)
    return None, _looks_instruct(name_or_path)  # a hub id


def _is_cached_conversion(directory: Path) -> bool:
    """Whether ``directory`` is one of the GGUF conversions :func:`_cached_conversion` writes."""
    return directory.parent == cache_root() / "models"


def _looks_instruct(name: str) -> bool:
    lowered = name.lower()
    return any(tag in lowered for tag in ("instruct", "-it", "chat"))


def _cached_conversion(key: str, gguf: Callable[[Path], Path]) -> Path:
    target = cache_root() / "models" / key
    if (target / "config.json").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{key}.")
    except OSError as error:
        warn_uncached(target.parent, error)
        target = _session_dir() / key
        scratch = tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{key}.")
    with scratch as scratch_name:
        workdir = Path(scratch_name)
        gguf_file = gguf(workdir)
        _convert_gguf(gguf_file, workdir / "hf")
        try:
            os.replace(workdir / "hf", target)
        except OSError:
            # Another process finished the same conversion first; its result is equivalent.
            if not (target / "config.json").is_file():
                raise
    return target


def _convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    print(f"converting {gguf_file.name} to a cached safetensors model (once) ...", flush=True)
    kwargs = {"gguf_file": gguf_file.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    quantised = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32,
                                                     **kwargs)
    fresh = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        quantised.config, dtype=torch.float32)
    fresh.load_state_dict(quantised.state_dict())
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def export(name_or_path: str, out_dir: str | Path) -> Path:
    """Write a directory that plain ``AutoModelForCausalLM.from_pretrained`` loads: a new or
    empty one, checked before the model is resolved or loaded, so no file of the user's is
    overwritten."""
    target = Path(out_dir)
    check_output_dir(target, "DIR")
    if target.is_dir() and any(target.iterdir()):
        raise UserError(f"{target}: directory exists and is not empty; choose a new directory")
    directory, _ = resolve(name_or_path)
    if directory is None:
        loaded = load(name_or_path)
        loaded.model.save_pretrained(target)
        loaded.tokenizer.save_pretrained(target)
        return target
    shutil.copytree(directory, target, dirs_exist_ok=True)
    return target


@dataclass(frozen=True)
class ModelSpec:
    """How a worker process loads the model this process has: small and picklable."""

    name: str
    device: str = "cpu"
    device_map: str | None = None  # "auto": spread over every GPU the worker sees

    @classmethod
    def on_gpus(cls, name: str, gpus: float) -> ModelSpec:
        """A worker's model: on its one GPU, spread over its several GPUs, or on its CPU."""
        return cls(name, "cuda" if gpus else "cpu", "auto" if gpus > 1 else None)

    def load(self) -> LoadedModel:
        return load(self.name, device=self.device, device_map=self.device_map)
