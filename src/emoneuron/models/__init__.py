"""Loading models (embedded GGUF packages, directories, hub ids) and locating their neurons."""

from emoneuron.models.adapters import Adapter, adapter_for
from emoneuron.models.loading import EMBEDDED, LoadedModel, export, load

__all__ = ["EMBEDDED", "Adapter", "LoadedModel", "adapter_for", "export", "load"]
