"""Real corpora into the record schema: ``load_corpus(format, path, options)``.

Utterance-level corpora (DailyDialog, MELD, ``--dialogue-column`` tables) give one record per
labelled utterance: that utterance as the last turn after up to ``options.context`` turns before
it (:func:`~emoneuron.data.loaders.common.context_windows`). Every loader returns the records with
a :class:`LoadReport` of what it skipped and why; malformed input is a ``UserError`` naming
file:line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from emoneuron.data.loaders.common import DEFAULT_CONTEXT, Loaded, LoadOptions, LoadReport
from emoneuron.data.loaders.dailydialog import load_dailydialog
from emoneuron.data.loaders.emoprism import load_emoprism
from emoneuron.data.loaders.goemotions import load_goemotions
from emoneuron.data.loaders.meld import load_meld
from emoneuron.data.loaders.tabular import load_table
from emoneuron.errors import UserError

Loader = Callable[[str | Path, LoadOptions], Loaded]
FORMATS: dict[str, Loader] = {
    "dailydialog": load_dailydialog,
    "meld": load_meld,
    "emoprism": load_emoprism,
    "goemotions": load_goemotions,
    "jsonl": partial(load_table, kind="jsonl"),
    "csv": partial(load_table, kind="csv"),
}


def load_corpus(format: str, path: str | Path, options: LoadOptions | None = None) -> Loaded:
    """Read ``path`` in ``format`` (one of :data:`FORMATS`); at least one record or UserError."""
    if format not in FORMATS:
        raise UserError(f"unknown data format {format!r}: use one of {', '.join(FORMATS)}")
    loaded = FORMATS[format](path, options or LoadOptions())
    if not loaded.records:
        why = "; ".join(line.strip() for line in loaded.report.lines()[1:])
        raise UserError(f"{path}: no records found in {format} format ("
                        f"{why or 'is the file in that format?'})")
    return loaded


__all__ = ["DEFAULT_CONTEXT", "FORMATS", "LoadOptions", "LoadReport", "Loaded", "load"]
