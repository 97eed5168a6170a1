"""The model settings every command shares, importable without torch: the default model, the
neuron sites every adapter offers, the tools their names are exported for, and the model and
device checks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from emoneuron.errors import UserError
from emoneuron.models.embedded import EMBEDDED
from emoneuron.options import did_you_mean

DEFAULT_MODEL = "smollm2-135m"

# Where a neuron is read and changed (emoneuron.models.adapters gives each family's modules).
Site = Literal["mlp.down_proj.input", "mlp.activation", "mlp.pre_activation"]
DEFAULT_SITE: Site = "mlp.down_proj.input"
ACTIVATION_SITE: Site = "mlp.activation"
PRE_ACTIVATION_SITE: Site = "mlp.pre_activation"
SITES: tuple[Site, ...] = get_args(Site)
# Where a neuron's removal is what the run measures: the default site, and mlp.activation with
# mode zero (which equals zeroing the default site's neuron). The gate before its activation is
# recorded and identified, never removed (`run` and `ablate` refuse it).
REMOVABLE_SITES: tuple[Site, ...] = (DEFAULT_SITE, ACTIVATION_SITE)


def removable(site: str, mode: str) -> bool:
    """Whether neurons found at ``site`` can be removed with intervention ``mode``.

    >>> removable("mlp.activation", "zero"), removable("mlp.pre_activation", "zero")
    (True, False)
    """
    return site in REMOVABLE_SITES and (site == DEFAULT_SITE or mode == "zero")

# Tools whose names for a site emoneuron knows (emoneuron.models.adapters.Adapter.hook_template).
Tool = Literal["transformerlens", "nnsight"]
TOOLS: tuple[Tool, ...] = get_args(Tool)


# The default device: CUDA where present, else MPS, else the CPU; resolved when the model loads
# (emoneuron.models.loading.resolve_device), so configs stay torch-free.
AUTO_DEVICE = "auto"


def check_device(device: str) -> None:
    """A UserError unless ``device`` is a torch device that exists here (``cpu`` and ``auto``
    are checked without importing torch).

    >>> check_device("auto")
    """
    if device in ("cpu", AUTO_DEVICE):
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available()
                                  or (parsed.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {device}: no such CUDA device here "
                        f"({torch.cuda.device_count()} found); use cpu")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available here; use cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device}: use auto, cpu, cuda, cuda:N or mps")


def check_model(name_or_path: str) -> None:
    """A UserError unless ``name_or_path`` can name a model: an embedded name, a ``.gguf`` file,
    a model directory (with a config.json) or a hub id ``org/name`` (not looked up here). Done
    from the name and the file system alone, so a typo is refused before torch is imported.

    >>> check_model("smollm2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    emoneuron.errors.UserError: unknown model 'smollm2' (did you mean smollm2-135m?): use an ...
    """
    if name_or_path in EMBEDDED:
        return
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"{path}: no such GGUF file")
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: directory has no config.json; pass a Hugging Face model "
                            "directory, a .gguf file or an embedded name")
    elif path.exists() or name_or_path.count("/") != 1:
        raise UserError(f"unknown model {name_or_path!r}{did_you_mean(name_or_path, EMBEDDED)}: "
                        f"use an embedded model ({', '.join(EMBEDDED)}), a model directory, a "
                        ".gguf file, or a hub id such as org/name")
