"""The report's comparison of the two units (``units.csv``,
:mod:`emoneuron.causal.inference.units`): per emotion, removing its neuron set beside projecting out
its direction, the steering of each, each against its own random null, and how many neurons match
one direction's effect, closing with which unit carries each emotion. It reads the run's files only.

>>> units_html(None)
''
"""

from __future__ import annotations

from html import escape

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.html import pp, table, ul
from emoneuron.reporting.setlevel_section import SCOPE_NAMES, excess_text, p_text

UNIT_NAMES = {"neurons": "its neurons", "direction": "its direction"}
STATISTIC_NAMES = {"own": "own-emotion accuracy drop (classifier)",
                   "cross": "mean drop on the other emotions (classifier)",
                   "specific": "own minus cross drop (classifier)",
                   "probe": "drop of the label-free probe's share of right layers"}


def _beyond(rows: pd.DataFrame) -> pd.Series:
    return rows.beyond.astype(str) == "True"


def result_cell(rows: pd.DataFrame) -> str:
    """One test's result (the first of ``rows``), or "-" where there is none."""
    if rows.empty:
        return "-"
    row = rows.iloc[0]
    if pd.isna(row["p_holm"]):
        return f"{pp(row['observed'])} (no null: no verdict)"
    return f"{excess_text(row)}, p(Holm) {p_text(row['p_holm'])}: {row['verdict']}"


def _side_by_side(rows: pd.DataFrame, columns: list[str], header: str, caption: str) -> str:
    """A row per emotion and, per ``columns`` value (a scope or a judge, in ``header``), a
    column per unit."""
    body = [[emotion, *(result_cell(rows[(rows.emotion == emotion) & (rows[header] == column)
                                   & (rows.unit == unit)])
                        for column in columns for unit in UNIT_NAMES)]
            for emotion in EMOTIONS]
    names = SCOPE_NAMES if header == "scope" else {c: f"{c} judge" for c in columns}
    headers = ["emotion", *(f"{UNIT_NAMES[unit]}, {names[column]}"
                            for column in columns for unit in UNIT_NAMES)]
    return table(headers, body, caption)


def _removal(units: pd.DataFrame) -> list[str]:
    removal = units[units.effect == "removal"]
    return [_side_by_side(removal[removal.statistic == statistic],
                          list(dict.fromkeys(removal.scope[removal.statistic == statistic])),
                          "scope", f"Removed: {STATISTIC_NAMES.get(statistic, statistic)}, "
                                   "excess over the unit's random null, points [95% interval]")
            for statistic in dict.fromkeys(removal.statistic)]


def _dimension(units: pd.DataFrame) -> str:
    rows = units[units.effect == "dimension"]
    if rows.empty:
        return ""
    whole = units[(units.effect == "removal") & (units.unit == "neurons")
                  & (units.scope == "all") & (units.statistic == "own")].set_index("emotion")
    body = [[row["emotion"], int(whole.loc[row["emotion"], "size"])
             if row["emotion"] in whole.index else "-",
             "-" if pd.isna(row["size"]) else int(row["size"]), row["note"]]
            for _, row in rows.iterrows()]
    return table(["emotion", "neurons in its set", "neurons matching its direction", "how"],
                 body, "The dimension it takes: how many neurons match one direction's effect")


def carriers(units: pd.DataFrame, emotion: str) -> tuple[list[str], list[str]]:
    """The units whose removal at every position lowers ``emotion``'s own accuracy beyond
    their random null, and those whose steering moves continuations toward it (any judge),
    from a run's ``units.csv``."""
    own = units[(units.emotion == emotion) & _beyond(units)]
    removed = own[(own.effect == "removal") & (own.scope == "all")
                  & (own.statistic == "own")].unit.tolist()
    return removed, list(dict.fromkeys(own[own.effect == "steering"].unit))


def carried_text(units: pd.DataFrame, emotion: str) -> str:
    """:func:`carriers` in words, e.g. "removing its neurons lowers it beyond the random
    null"."""
    removed, steered = carriers(units, emotion)
    carried = " and ".join(UNIT_NAMES[u] for u in removed) if removed else "neither unit"
    text = f"removing {carried} lowers it beyond the random null"
    if steered:
        text += (f"; steering with {' and '.join(UNIT_NAMES[u] for u in steered)} moves "
                 "continuations toward it beyond random")
    return text


def units_html(units: pd.DataFrame | None) -> str:
    """The section ("" where the run wrote no ``units.csv``)."""
    if units is None:
        return ""
    steering = units[units.effect == "steering"]
    parts = [f"<p>{escape(INTRO)}</p>", *_removal(units)]
    if steering.empty:
        parts.append('<p class="note">No judged steering in this run (--steer-judges).</p>')
    else:
        parts.append(_side_by_side(steering, list(dict.fromkeys(steering.statistic)),
                                   "statistic", "Steered: share of continuations judged as "
                                   "the emotion, excess over the unit's nulls, points "
                                   "[95% interval]"))
    parts.append(_dimension(units))
    closing = ul([f"{emotion}: {carried_text(units, emotion)}." for emotion in EMOTIONS])
    return ("".join(parts) + "<h3>Which unit carries each emotion</h3>"
            + f'<p class="note">{escape(CLOSING)}</p>' + closing)


INTRO = ("Each emotion's neuron set and its direction side by side (units.csv), each against "
         "its own random null: the set against random sets matched layer by layer and by "
         "activation frequency, the direction against random unit directions in the "
         "directions' subspace; removal from setlevel.csv and directions_setlevel.csv, "
         "steering from steering_judges.csv. Each test keeps its own table's Holm correction "
         "across the six emotions.")
CLOSING = ("From the tests above at the Holm level: removal at every position, own-emotion "
           "accuracy (the classifier); steering, either judge. Neither unit beyond its null "
           "is no evidence that neither carries the emotion: read each test's interval and "
           "the detectable excess of the set-level tables.")
