"""Template groups: records made from one template, and what two data sets share of them.

A record's ``meta["template"]`` names the template (or family of templates) it was filled in
from; records with the same name, of any emotion, form one group, which
:func:`emoneuron.data.split.split` keeps on one side so that evaluation tests the emotion, not
the memory of a template. ``meta`` may also name the phrasing each record shows, per kind
(:data:`PHRASING_KINDS`, as the synthetic generator writes them: one name or a list of
template texts); :func:`template_overlap` counts what two data sets share, per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emoneuron.data.schema import Record

TEMPLATE = "template"
PHRASING_KINDS = ("opener", "reactions", "follow_ups")


def meta_values(record: Record, key: str) -> set[str]:
    """The values of ``meta[key]``: one string, or each item of a list; none when absent."""
    value: Any = record.meta.get(key)
    if value is None:
        return set()
    return {str(item) for item in value} if isinstance(value, list) else {str(value)}


def template_overlap(first: Sequence[Record], second: Sequence[Record]
                     ) -> dict[str, dict[str, int]]:
    """Per key (the template, then each phrasing kind) that either data set carries: how many
    distinct values ``second`` has, how many of them ``first`` has too, and how many records
    of ``second`` show a shared one.

    >>> from emoneuron.data.schema import Turn
    >>> a = Record("a", "fear", (Turn("A", "Boo."),), meta={"template": "t1"})
    >>> b = Record("b", "fear", (Turn("A", "Eek."),), meta={"template": "t1"})
    >>> template_overlap([a], [b])
    {'template': {'values': 1, 'shared': 1, 'records': 1}}
    """
    table = {}
    for key in (TEMPLATE, *PHRASING_KINDS):
        seen_first = set().union(*(meta_values(record, key) for record in first))
        per_record = [meta_values(record, key) for record in second]
        seen_second = set().union(*per_record)
        if seen_first or seen_second:
            table[key] = {"values": len(seen_second), "shared": len(seen_first & seen_second),
                          "records": sum(bool(values & seen_first) for values in per_record)}
    return table

