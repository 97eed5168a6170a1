"""The report's judged steering (``steering_judges.csv`` and ``.json``,
:mod:`emoneuron.causal.experiments.steerjudge`): each emotion's neurons amplified and its direction
added, the continuations judged by the label-free probe and the emotion lexicon against null draws,
with a verdict line per unit and judge and a few continuations. It reads the run's files only.

>>> judged_steering_html(None, None)
''
"""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from emoneuron.reporting.html import pct, table
from emoneuron.reporting.setlevel_section import excess_text, p_text

UNIT_ACTIONS = {"neurons": "amplifying its neurons", "direction": "adding its direction"}
JUDGE_NAMES = {"probe": "probe judge", "lexicon": "lexicon judge"}


def _verdict_lines(table_: pd.DataFrame) -> str:
    """One verdict line per unit and judge, from the table's Holm-adjusted verdicts."""
    lines = []
    for (unit, judge), family in table_.groupby(["unit", "judge"], sort=False):
        if family.p_holm.isna().all():
            lines.append(f"{JUDGE_NAMES[judge]}, {UNIT_ACTIONS[unit]}: no verdict without "
                         "controls (no null draws in this run; --steer-null-draws).")
            continue
        toward = family.emotion[family.toward.astype(str) == "True"].tolist()
        lines.append(f"{JUDGE_NAMES[judge]} (Holm across the {len(family)} emotions, "
                     f"family-wise 0.05): {UNIT_ACTIONS[unit]} steers the continuations toward "
                     f"the emotion beyond random for "
                     f"{', '.join(toward) if toward else 'no emotion'}.")
    return "".join(f'<p class="verdict">{escape(line)}</p>' for line in lines)


def _unit_tables(table_: pd.DataFrame, draws: int) -> list[str]:
    parts = []
    for (unit, judge), family in table_.groupby(["unit", "judge"], sort=False):
        body = []
        for _, row in family.iterrows():
            words = ([f"{row['lexicon_words_per_continuation']:.2f}"] if judge == "lexicon"
                     else [])
            body.append([row["emotion"], int(row["size"]), pct(row["unsteered_share"]),
                         f"{pct(row['share'])} [{pct(row['share_ci_low'])}, "
                         f"{pct(row['share_ci_high'])}]",
                         pct(row["null_mean_share"]) if draws else "-",
                         f"{excess_text(row)}, p(Holm) {p_text(row['p_holm'])}"
                         if pd.notna(row["p_holm"]) else "-", row["verdict"], *words])
        size = "neurons" if unit == "neurons" else "layers steered"
        headers = ["emotion", size, "unsteered", "steered [95% CI]",
                   f"nulls' mean ({draws} draws)", "excess over nulls, points [95% interval]",
                   "verdict", *(["its words per continuation"] if judge == "lexicon" else [])]
        parts.append(table(headers, body, f"{UNIT_ACTIONS[unit]}: share of continuations "
                                          f"judged as the emotion by the {JUDGE_NAMES[judge]}"))
    return parts


def _samples(samples: dict[str, dict[str, list[str]]]) -> str:
    """Per emotion, the continuations the run chose to show, by what steered them."""
    return "".join(f"<h4>{escape(emotion)}</h4>"
                   + table(["steered by", "continuation"],
                           [[label, text] for label, texts in shown.items() for text in texts])
                   for emotion, shown in samples.items())


def judged_steering_html(table_: pd.DataFrame | None,
                         description: dict[str, Any] | None) -> str:
    """The judged steering: how it was done, the verdict lines, a table per unit and judge,
    and sample continuations ("" where the run judged no steering)."""
    if table_ is None or description is None:
        return ""
    draws = int(description["null_draws"])
    layers = description["direction_layers"]
    directed = (f"its direction added at residual layers {', '.join(map(str, layers))} with "
                f"alpha {description['alpha']:.3g} ({description['alpha_rule']})" if layers
                else "no direction (the model has no residual layer between its embeddings "
                     "and its top)")
    intro = (f"The model continues {len(description['dialogues'])} neutral dialogues (greedy, "
             f"{description['new_tokens']} new tokens) with each emotion's neurons amplified "
             f"x{description['strength']:g}, with {directed}, against {draws} null draws of "
             f"each unit ({description['nulls']['neurons']}, per emotion; "
             f"{description['nulls']['direction']}, shared by the emotions), and unsteered. "
             f"Two judges read the continuations, neither of them the steered classifier: the "
             f"label-free probe, in an unsteered forward pass of each continuation read alone, "
             f"at residual layer {description['judge_layer']} ({description['judge_layer_rule']};"
             f" its accuracy there {pct(description['probe_accuracy_at_judge_layer'])}), and "
             "the emotion lexicon (a continuation holding a word of the emotion). Shares carry "
             "Wilson 95% intervals; each unit is tested against its null draws with the "
             "set-level test (the unit as one more draw), Holm across the six emotions of each "
             "unit and judge.")
    return (f"<h3>Steering judged outside the classifier</h3><p>{escape(intro)}</p>"
            + _verdict_lines(table_) + "".join(_unit_tables(table_, draws))
            + "<h3>Sample continuations, judged steering</h3>"
            + _samples(description["samples"]))
