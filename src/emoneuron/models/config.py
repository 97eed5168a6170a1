"""The model settings every command shares, importable without torch: the default model, the
neuron sites every adapter offers, the tools their names are exported for, and the device
check."""

from __future__ import annotations

from typing import Literal, get_args

from emoneuron.errors import UserError

DEFAULT_MODEL = "smollm2-135m"

# Where a neuron is read and changed (emoneuron.models.adapters gives each family's modules).
Site = Literal["mlp.down_proj.input", "mlp.activation", "mlp.pre_activation"]
DEFAULT_SITE: Site = "mlp.down_proj.input"
ACTIVATION_SITE: Site = "mlp.activation"
PRE_ACTIVATION_SITE: Site = "mlp.pre_activation"
SITES: tuple[Site, ...] = get_args(Site)

# Tools whose names for a site emoneuron knows (emoneuron.models.adapters.Adapter.hook_template).
Tool = Literal["transformerlens", "nnsight"]
TOOLS: tuple[Tool, ...] = get_args(Tool)


def check_device(device: str) -> None:
    """A UserError unless ``device`` is a torch device that exists here (``cpu`` is checked
    without importing torch).

    >>> check_device("cpu")
    """
    if device == "cpu":
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available()
                                  or (parsed.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {device}: no such CUDA device here "
                        f"({torch.cuda.device_count()} found); use cpu")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available here; use cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device}: use cpu, cuda, cuda:N or mps")
