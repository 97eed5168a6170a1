"""Loading models (embedded GGUF packages, directories, hub ids) and locating their neurons.

The names below are imported on first use, so :mod:`emoneuron.models.config` (sites, the
default model) stays importable without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emoneuron.models.adapters import Adapter, adapter_for
    from emoneuron.models.loading import EMBEDDED, LoadedModel, export, load

_HOMES = {"Adapter": "adapters", "adapter_for": "adapters", "EMBEDDED": "loading",
          "LoadedModel": "loading", "export": "loading", "load": "loading"}
__all__ = ["EMBEDDED", "Adapter", "LoadedModel", "adapter_for", "export", "load"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'emoneuron.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"emoneuron.models.{_HOMES[name]}"), name)
