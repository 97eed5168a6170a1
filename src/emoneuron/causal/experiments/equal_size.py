"""The method comparison at equal set size (``emoneuron run --compare-methods ... --equal-size``).

Methods' sets differ in size (LAPE's assign a kept neuron to every emotion it is active for,
argmax methods to one), and a larger set can remove more for its size alone. So each compared
method's set of an emotion is also cut to the same size, the smallest of the methods' sets of
that emotion, keeping each method's own top-ranked neurons: each ``neurons.json`` lists an
emotion's neurons best first by the score its rule selected them by
(:meth:`~emoneuron.selection.neurons.NeuronSets.top`). The cut sets are compared like any
method, under their own tag (``lape@equal``), beside random sets matched to them, so
``methods.csv`` and ``setlevel.csv`` hold both sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

from emoneuron.causal.experiments.method_comparison import Compared
from emoneuron.data.schema import EMOTIONS

EQUAL = "@equal"  # no method name or `ablate --name` holds "@", so the tag is never another's


def smallest_sizes(compared: Sequence[Compared]) -> dict[str, int]:
    """Per emotion, the size of the smallest of the compared methods' sets."""
    return {e: min(len(method.sets.emotions.get(e, [])) for method in compared)
            for e in EMOTIONS}


def at_equal_size(compared: Sequence[Compared]) -> list[Compared]:
    """Each compared method's sets cut to :func:`smallest_sizes`, tagged ``NAME@equal``; their
    controls and mean-mode values come from the same statistics as the full sets'."""
    sizes = smallest_sizes(compared)
    return [Compared(f"{method.name}{EQUAL}",
                     f"{method.label}, each emotion's top neurons, as many as the smallest "
                     "method's set", method.sets.top(sizes), f"{method.name}{EQUAL}",
                     method.sources)
            for method in compared]
