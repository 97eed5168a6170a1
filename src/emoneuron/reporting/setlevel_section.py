"""The report's verdicts: each method's emotion sets against many random sets
(``setlevel.csv``, :mod:`emoneuron.causal.inference.setlevel`), Holm-corrected across the six
emotions.

:func:`set_level_summary` is the summary's answer to "what happens when they are removed";
:func:`set_level_html` the section with every method, scope and statistic, and the read-versus-
answer verdict of each set. Nothing here computes a test: it reads the table.

>>> set_level_summary(None)
'<p class="note">No set-level test in this run: no verdict is given.</p>'
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.html import pct, pp, table, ul

SCOPE_NAMES = {"all": "every position", "dialogue": "the dialogue's tokens only",
               "last": "the scored position only"}
NONE_NOTE = '<p class="note">No set-level test in this run: no verdict is given.</p>'


def excess_text(row: pd.Series | Mapping[str, Any]) -> str:
    return f"{pp(row['excess'])} [{pp(row['ci_low'])}, {pp(row['ci_high'])}]"


def p_text(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _own(table_: pd.DataFrame, method: str, scope: str) -> pd.DataFrame:
    rows = table_[(table_.method == method) & (table_.scope == scope)
                  & (table_.statistic == "own")]
    return rows.set_index("masked_emotion")


def _beyond(rows: pd.DataFrame) -> pd.Series:
    return rows.beyond.astype(str) == "True"


def _random_sets(table_: pd.DataFrame) -> str:
    """How many random sets the tests used: all K, or fewer where a look stopped a set."""
    counts = table_.k_random_sets.astype(int)
    if counts.min() == counts.max():
        return f"{counts.max()} random sets"
    return (f"up to {counts.max()} random sets (a set stopped at a look was tested against "
            f"fewer, {counts.min()} at least: futile, or already a finding with a fifth of "
            "alpha, whose p-value carries that share)")


def set_level_summary(table_: pd.DataFrame | None) -> str:
    """Per method, the emotions whose set's own drop is beyond random sets (every position,
    Holm) and the read-versus-answer verdicts."""
    if table_ is None or table_.empty:
        return NONE_NOTE
    first = table_.iloc[0]
    lines = []
    for method in dict.fromkeys(table_.method):
        own = _own(table_, method, "all")
        if own.empty:
            continue
        found = [f"{e} ({excess_text(own.loc[e])} points, p(Holm) {p_text(own.loc[e, 'p_holm'])})"
                 for e in own.index[_beyond(own)]]
        reading = own.reading.astype(object).fillna("").astype(str)
        text = (f"{method}: own-emotion drop beyond random sets for "
                f"{', '.join(found) if found else 'no emotion'}")
        if reading.any():
            readers = [e for e, kind in reading.items() if "reading" in kind]
            text += (f"; acts while reading the dialogue for "
                     f"{', '.join(readers) if readers else 'no emotion'}")
        probe = table_[(table_.method == method) & (table_.statistic == "probe")]
        if not probe.empty:
            lowered = probe.masked_emotion[_beyond(probe)].tolist()
            text += ("; the label-free probe loses the emotion beyond random sets for "
                     f"{', '.join(lowered) if lowered else 'no emotion'}")
        lines.append(text + ".")
    intro = (f"Each emotion's neuron set against {_random_sets(table_)} matched to it layer "
             "by layer and by activation frequency, on the same held-out dialogues; the set is "
             "the unit (a prediction interval from the random sets' spread plus the dialogues' "
             "variance, Student's t), Holm-corrected across the six emotions; p-values are "
             "Holm-adjusted, intervals 95% and clipped to the possible range. These are the "
             "report's only verdicts.")
    own_all = table_[(table_.statistic == "own") & (table_.scope == first["scope"])]
    detectable = 100 * own_all.min_detectable_excess.astype(float)
    intro += (f" Power: the own-drop excess each test finds with 80% power at the Holm level, "
              f"given the random sets' spread, is {detectable.median():.0f} points (median; "
              f"{detectable.min():.0f} to {detectable.max():.0f}); a smaller effect may be "
              "missed.")
    return f"<p>{escape(intro)}</p>" + ul([escape(line) for line in lines])


def probe_html(description: dict[str, Any] | None) -> str:
    """The probe's held-out accuracy per residual layer, in one sentence ("" without one)."""
    if not description or not description.get("held_out_accuracy"):
        return ""
    accuracy = [float(a) for a in description["held_out_accuracy"]]
    best = max(range(len(accuracy)), key=accuracy.__getitem__)
    text = (f"The label-free probe (a linear readout of the residual stream while the dialogue "
            f"is read alone, no prompt, no label word) names the held-out dialogues' emotion "
            f"with accuracy {pct(accuracy[0])} from the embeddings alone and {pct(accuracy[best])}"
            f" at its best layer ({best}), against chance {pct(1 / len(EMOTIONS))}. A high "
            "embedding accuracy means the words alone give the emotion away; only a drop after "
            "a set, beyond random sets, shows the set carries it.")
    return f"<p>{escape(text)}</p>"


def set_level_html(table_: pd.DataFrame | None, probe: dict[str, Any] | None = None) -> str:
    """Every method's set-level results: one table per method and statistic, a column per
    scope, and the read-versus-answer verdict; the probe's accuracy first."""
    if table_ is None or table_.empty:
        return NONE_NOTE
    parts = [probe_html(probe), *scope_tables(table_, "set", "neurons in the set",
                                                     "random sets")]
    note = ("Own: accuracy drop on the set's emotion; cross: mean drop on the other "
            "emotions' sample; specific: own minus cross; probe: drop of the label-free "
            "probe's share of right layers after the set, on the set's emotion, the dialogue "
            "read alone. Excess: the set's statistic minus the random sets' mean; its 95% "
            "interval is clipped to the possible range (100 points either way, 200 for "
            "specific), which can only raise its coverage. p(Holm): Holm-adjusted across the "
            "six emotions of the table's column. Detectable: "
            "the excess the test finds with 80% power at the Holm family's first level, given "
            "the random sets' spread. A set acts while reading when removing it on the "
            "dialogue's tokens only drops its emotion beyond random sets; at the answer when "
            "removing it at the scored position only does.")
    return "".join(parts) + f'<p class="note">{escape(note)}</p>'


def scope_tables(table_: pd.DataFrame, unit: str, size_header: str,
                 null_name: str) -> list[str]:
    """One table per ``method`` and statistic of a set-level table (``setlevel.csv``'s
    columns), a row per emotion and a column per scope where the ``unit`` (set, direction) is
    removed, with each unit's size (``n_neurons``, under ``size_header``) and the
    read-versus-answer verdict of own rows; ``null_name`` says what it was tested against."""
    parts = []
    scopes = list(dict.fromkeys(table_.scope))
    grouped = {key: rows.to_dict("records")
               for key, rows in table_.groupby(["method", "statistic"], sort=False)}
    for method in dict.fromkeys(table_.method):
        for statistic in dict.fromkeys(table_.statistic):
            first: dict[str, dict[str, Any]] = {}  # per emotion, its first row in any scope
            cell: dict[tuple[str, str], dict[str, Any]] = {}
            for row in grouped.get((method, statistic), []):
                first.setdefault(row["masked_emotion"], row)
                cell.setdefault((row["masked_emotion"], row["scope"]), row)
            body = []
            for emotion in EMOTIONS:
                cells: list[object] = [emotion, int(first[emotion]["n_neurons"])
                                       if emotion in first else ""]
                for scope in scopes:
                    row = cell.get((emotion, scope))
                    cells.append("" if row is None else
                                 f"{excess_text(row)}, p(Holm) {p_text(row['p_holm'])}: "
                                 f"{row['verdict']} "
                                 f"(detectable {pp(row['min_detectable_excess'])})")
                if statistic == "own":
                    reading = first[emotion]["reading"] if emotion in first else ""
                    cells.append("" if pd.isna(reading) else str(reading))
                body.append(cells)
            headers = ["emotion", size_header,
                       *(f"{unit} removed at {SCOPE_NAMES[s]}" for s in scopes)]
            if statistic == "own":
                headers.append("reads or answers")
            parts.append(table(headers, body, f"{method}: {statistic} drop, excess over "
                                              f"{null_name}, points [95% interval]"))
    return parts


def effect_sweep_html(sweep: pd.DataFrame | None) -> str:
    """Where each effect lives: every part (layer range x share) of each set beyond random
    sets, against random parts matched to it, Holm across the sweep ("" without the file)."""
    if sweep is None:
        return ""
    if sweep.empty:
        return ('<p class="note">Effect sweep: no set of this run\'s method is beyond random '
                "sets at every position, so no part of one is localised.</p>")
    body = [[row["masked_emotion"], row["layer_range"], pct(float(row["proportion"])),
             int(row["n_neurons"]), f"{excess_text(row)}, p(Holm) {p_text(row['p_holm'])}",
             int(row["k_random_sets"]), row["verdict"]]
            for _, row in sweep.iterrows()]
    return table(["emotion", "layers", "share of the set", "neurons", "excess over random parts",
                  "random parts", "verdict"], body,
                 f"{sweep.method.iloc[0]}: where each effect lives, own drop, points "
                 "[95% interval], Holm across every part")


def formats_html(set_level: pd.DataFrame | None, formats: pd.DataFrame | None) -> str:
    """Each method's sets in the run's answer format and in every other format tested, own
    drop at every position against random sets ("" without the formats file)."""
    if formats is None or formats.empty or set_level is None:
        return ""
    parts = []
    others = list(dict.fromkeys(formats.answer_format))
    for method in dict.fromkeys(formats.method):
        runs = _own(set_level, method, "all")
        asked = {f: formats[(formats.method == method) & (formats.answer_format == f)]
                 .set_index("masked_emotion") for f in others}
        body = [[emotion, *(f"{excess_text(rows.loc[emotion])}, p(Holm) "
                            f"{p_text(rows.loc[emotion, 'p_holm'])}: {rows.loc[emotion, 'verdict']}"
                            if emotion in rows.index else ""
                            for rows in (runs, *asked.values()))]
                for emotion in EMOTIONS]
        parts.append(table(["emotion", "the run's answer format", *others], body,
                           f"{method}: own drop, excess over random sets, points [95% interval],"
                           " by answer format"))
    note = ("A set that moves the emotion moves it whatever the model is asked to answer; one "
            "beyond random sets in the run's format only may move the way of answering (the "
            "label word) rather than the emotion. A format the model answers near chance "
            "cannot show a drop: read its baseline first.")
    return "<h3>Answer formats</h3>" + "".join(parts) + f'<p class="note">{escape(note)}</p>'
