"""What two data sets share of their templates and phrasing, counted from ``meta``."""

from __future__ import annotations

from emoneuron.data.schema import Record, Turn
from emoneuron.data.templates import template_overlap


def _record(name: str, **meta: object) -> Record:
    return Record(name, "fear", (Turn("A", f"text {name}"),), meta=dict(meta))


def test_counts_values_shared_values_and_records_per_key() -> None:
    first = [_record("a", template="t1", reactions=["r1", "r2"]),
             _record("b", template="t2", reactions=["r3"])]
    second = [_record("c", template="t1", reactions=["r2"]),
              _record("d", template="t3", reactions=["r4", "r5"]),
              _record("e", template="t3", reactions=["r3"]),
              _record("f")]
    assert template_overlap(first, second) == {
        "template": {"values": 2, "shared": 1, "records": 1},
        "reactions": {"values": 4, "shared": 2, "records": 2},
    }
    assert template_overlap(second, first)["template"] == {"values": 2, "shared": 1,
                                                           "records": 1}


def test_keys_neither_side_carries_are_left_out() -> None:
    plain = [_record("a"), _record("b")]
    assert template_overlap(plain, plain) == {}
    only_second = template_overlap(plain, [_record("c", opener="blame")])
    assert only_second == {"opener": {"values": 1, "shared": 0, "records": 0}}
