"""emoneuron: find the neurons in a language model that carry emotion, and prove what they do.

The quick-start names are importable from here:

>>> import emoneuron
>>> records = emoneuron.synthesize(2, seed=0)
>>> len(records), emoneuron.IdentifyConfig().rule
(12, 'global')

They are imported on first use (PEP 562), so ``import emoneuron`` stays cheap: the command
line reads ``__version__`` (from :mod:`emoneuron.version`) and must not pay for torch and
transformers to do so.
``emoneuron.run`` is the pipeline function of :mod:`emoneuron.app.run`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from emoneuron.version import __version__

if TYPE_CHECKING:
    from emoneuron.app.run import run
    from emoneuron.causal.evaluation.intervene import Ablation, applied
    from emoneuron.config import RunConfig
    from emoneuron.data.synth import synthesize
    from emoneuron.models.loading import load
    from emoneuron.recording.recorder import record
    from emoneuron.rundir import open_run
    from emoneuron.selection.identify import IdentifyConfig, identify

# Each quick-start name and the module that defines it.
_HOMES = {
    "load": "emoneuron.models.loading",
    "synthesize": "emoneuron.data.synth",
    "record": "emoneuron.recording.recorder",
    "identify": "emoneuron.selection.identify",
    "IdentifyConfig": "emoneuron.selection.config",
    "Ablation": "emoneuron.causal.evaluation.intervene",
    "applied": "emoneuron.causal.evaluation.intervene",
    "RunConfig": "emoneuron.config",
    "run": "emoneuron.app.run",
    "open_run": "emoneuron.rundir",
}

__all__ = ["Ablation", "IdentifyConfig", "RunConfig", "__version__", "applied", "identify",
           "load", "open_run", "record", "run", "synthesize"]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'emoneuron' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
