"""The report's section on emotion directions (``directions.json``,
``directions_setlevel.csv``, :mod:`emoneuron.causal.experiments.dirtest`): how well one direction
per emotion names held-out dialogues, and what removing it does, against random directions and
against directions from shuffled labels. It reads the run's files only.

>>> directions_html(None, None)
''
"""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.html import pct
from emoneuron.reporting.setlevel_section import scope_tables


def _accuracy_text(description: dict[str, Any]) -> str:
    """The directions' nearest-direction accuracy at the tested layers, beside the probe's."""
    layers = [int(layer) for layer in description.get("tested_layers", [])]
    directions = [float(a) for a in description.get("held_out_accuracy", [])]
    probe = [float(a) for a in description.get("probe_held_out_accuracy", [])]
    if not layers or not directions:
        return ""
    read = ", ".join(f"layer {layer}: {pct(directions[layer])}"
                     + (f" (probe {pct(probe[layer])})" if len(probe) > layer else "")
                     for layer in layers)
    return (f"One direction per emotion and residual layer (the difference of the emotion's "
            f"mean residual stream from the mean over emotions, identification dialogues "
            f"read alone) names the held-out dialogues' emotion by the nearest direction "
            f"with accuracy {read}, against chance {pct(1 / len(EMOTIONS))}. These layers "
            f"are tested: {description.get('layer_choice', '')}.")


def directions_html(table_: pd.DataFrame | None, description: dict[str, Any] | None) -> str:
    """The section: the directions' accuracy, then one table per null and statistic (a
    column per scope); "" where the run has no directions."""
    if table_ is None or description is None:
        return ""
    parts = [f"<p>{escape(_accuracy_text(description))}</p>"]
    if not table_.empty:
        sized = table_.assign(n_neurons=table_.n_layers)
        parts += scope_tables(sized, "direction", "layers", "its nulls")
    # The nulls' own descriptions (directions.json), those the table tested.
    tested = [f"K {text}" for null, text in description.get("nulls", {}).items()
              if table_.empty or null in set(table_.null)]
    note = ("Each emotion's direction is projected out of the residual stream (h - (h . d) d) "
            f"at the tested layers and compared with {' and with '.join(tested) or 'its nulls'}"
            ", removed alike: the set-level test of the neuron sets, the direction as the "
            "unit, Holm across the six emotions of each null, scope and statistic. Own, cross, "
            "specific: the classifier's drops, as for sets; probe: the label-free probe's "
            "share of right layers from the first tested layer up, the dialogue read alone.")
    return "".join(parts) + f'<p class="note">{escape(note)}</p>'
