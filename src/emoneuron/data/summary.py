"""``emoneuron data stats``: what a data file holds, per emotion, per source, and how long."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from emoneuron.data.schema import LABELS, Record


def _spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def describe(records: list[Record]) -> dict[str, Any]:
    """Counts per label (six emotions, then neutral) and source; turns and characters per record."""
    emotions = Counter(record.emotion for record in records)
    return {
        "records": len(records),
        "emotions": {label: emotions[label] for label in LABELS},
        "sources": dict(Counter(record.source for record in records).most_common()),
        "turns": _spread([len(record.turns) for record in records]),
        "characters": _spread([sum(len(turn.text) for turn in record.turns)
                               for record in records]),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table."""
    total = summary["records"]
    lines = [f"{total} records", "", f"{'emotion':<12} {'records':>8} {'share':>7}"]
    lines += [f"{label:<12} {count:>8} {count / total:>7.1%}"
              for label, count in summary["emotions"].items()]
    lines += ["", f"{'source':<24} {'records':>8}"]
    lines += [f"{source:<24} {count:>8}" for source, count in summary["sources"].items()]
    lines += ["", f"{'length':<12} {'min':>8} {'median':>8} {'max':>8}"]
    for name in ("turns", "characters"):
        spread = summary[name]
        lines.append(f"{name:<12} {spread['min']:>8g} {spread['median']:>8g} {spread['max']:>8g}")
    return "\n".join(lines)
