"""The report's section on emotion directions, rendered from ``directions.json`` and
``directions_setlevel.csv``: the directions' accuracy at the tested layers, a table per null
and statistic, and a note naming the nulls the run tested, no other."""

from __future__ import annotations

import doctest

import pandas as pd

from emoneuron.reporting import directions_section
from emoneuron.reporting.directions_section import directions_html


def _description() -> dict[str, object]:
    return {"tested_layers": [1, 2], "held_out_accuracy": [0.2, 0.5, 0.6, 0.3],
            "probe_held_out_accuracy": [0.2, 0.7, 0.8, 0.4], "layer_choice": "the best two",
            "nulls": {"random": "random unit directions, matched in norm",
                      "shuffled": "directions from shuffled identification labels"}}


def _table(nulls: tuple[str, ...]) -> pd.DataFrame:
    rows = [{"unit": "direction", "null": null, "method": f"direction vs {null}",
             "scope": "all", "statistic": "own", "masked_emotion": emotion, "n_layers": 2,
             "excess": 0.1, "ci_low": -0.1, "ci_high": 0.3, "p_holm": 0.5,
             "min_detectable_excess": 0.4, "verdict": "not distinguishable from random sets",
             "reading": ""}
            for null in nulls for emotion in ("anger", "fear")]
    return pd.DataFrame(rows)


def test_the_note_names_the_nulls_the_run_tested() -> None:
    both = directions_html(_table(("random", "shuffled")), _description())
    assert "K random unit directions, matched in norm and with K directions from shuffled" \
        in both
    random_only = directions_html(_table(("random",)), _description())
    assert "K random unit directions, matched in norm, removed alike" in random_only
    assert "shuffled" not in random_only
    assert random_only.count("<table") == 1 and both.count("<table") == 2
    assert "layer 1: 50.0% (probe 70.0%), layer 2: 60.0% (probe 80.0%)" in random_only


def test_no_directions_no_section() -> None:
    assert directions_html(None, _description()) == ""
    assert doctest.testmod(directions_section).failed == 0

