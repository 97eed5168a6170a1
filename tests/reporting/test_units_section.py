"""The report's comparison of the two units, rendered from ``units.csv``: each test as its table
wrote it, and a closing line per emotion saying which unit carries it."""

from __future__ import annotations

import doctest
import math

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting import units_section
from emoneuron.reporting.units_section import units_html


def _units() -> pd.DataFrame:
    rows = []
    beyond = {("neurons", "removal"): ["anger"], ("direction", "removal"): ["anger", "fear"],
              ("direction", "steering"): ["sadness"]}
    for emotion in EMOTIONS:
        for unit in ("neurons", "direction"):
            for scope in ("all", "dialogue", "last"):
                found = emotion in beyond[unit, "removal"]
                rows.append({"emotion": emotion, "unit": unit, "effect": "removal",
                             "scope": scope, "statistic": "own", "size": 40, "observed": 0.3,
                             "excess": 0.2, "ci_low": 0.1, "ci_high": 0.3,
                             "p_holm": 0.01 if found else 0.5,
                             "verdict": "beyond random sets" if found else "not", "note": "",
                             "beyond": found and scope == "all"})
            found = emotion in beyond.get((unit, "steering"), [])
            rows.append({"emotion": emotion, "unit": unit, "effect": "steering", "scope": "all",
                         "statistic": "probe", "size": 3, "observed": 0.5, "excess": 0.4,
                         "ci_low": 0.1, "ci_high": 0.6, "p_holm": 0.01 if found else 0.5,
                         "verdict": "toward" if found else "not", "note": "", "beyond": found})
        rows.append({"emotion": emotion, "unit": "neurons", "effect": "dimension",
                     "scope": "all", "statistic": "own",
                     "size": 12 if emotion == "anger" else math.nan, "observed": math.nan,
                     "excess": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                     "p_holm": math.nan, "verdict": "", "note": f"how for {emotion}",
                     "beyond": False})
    return pd.DataFrame(rows)


def test_units_section_closes_with_which_unit_carries_each_emotion() -> None:
    html = units_html(_units())
    assert ("anger: removing its neurons and its direction lowers it beyond the random null."
            in html)
    assert "fear: removing its direction lowers it beyond the random null." in html
    assert ("sadness: removing neither unit lowers it beyond the random null; steering with "
            "its direction moves continuations toward it beyond random.") in html
    assert "its neurons, the dialogue&#x27;s tokens only" in html
    assert "<td>anger</td><td>40</td><td>12</td><td>how for anger</td>" in html
    assert "<td>fear</td><td>40</td><td>-</td>" in html
    assert units_html(None) == ""


def test_the_modules_examples_hold() -> None:
    assert doctest.testmod(units_section).failed == 0
