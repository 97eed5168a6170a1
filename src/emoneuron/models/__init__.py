"""Loading models (embedded GGUF packages, directories, hub ids) and locating their neurons.

The table of embedded models (:mod:`emoneuron.models.embedded`) and :mod:`emoneuron.models.config`
(sites, the default model) come without torch; the loaders and adapters are imported on first use
(PEP 562), so ``emoneuron models list`` and the command line's parser do not pay for torch and
transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emoneuron.models.embedded import EMBEDDED

if TYPE_CHECKING:
    from emoneuron.models.adapters import Adapter, adapter_for
    from emoneuron.models.loading import LoadedModel, export, load

_HOMES = {"Adapter": "adapters", "adapter_for": "adapters",
          "LoadedModel": "loading", "export": "loading", "load": "loading"}
__all__ = ["EMBEDDED", "Adapter", "LoadedModel", "adapter_for", "export", "load"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'emoneuron.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"emoneuron.models.{_HOMES[name]}"), name)
