"""The ``last`` token scope at the cost of one position per query.

An intervention restricted to each query's scored (last) position changes nothing at any earlier
position: attention is causal, so every earlier key and value is the unchanged model's. The
classifier (:meth:`emoneuron.causal.evaluation.classifier.Classifier.predict`) therefore runs the
unchanged model once over each batch's queries but their last tokens, keeps those keys and values
here (:class:`KeptPositions`, keyed by the batch's token ids), and for every ``last``-scope
condition runs only each row's last token on :func:`extended`, a fresh cache built from them.
Thousands of conditions on the same dialogues then cost one position per query each, not the whole
query: on SmolLM2-135M (``bench/last_scope.py``, 30 dialogues, one torch thread) a condition after
the first took 1.7 s against 20.6 s for the full recompute; the first, which computes what is kept,
costs about a full pass.

Memory: the keys and values of every layer at each kept position, ``2 x layers x key/value
heads x head size x bytes per number`` per position (:func:`bytes_per_position`): 46,080 bytes
on SmolLM2-135M in float32 (30 layers, 3 heads of 64): 2.8 MiB per query in the bench (about
63 positions, a batch's padding included).
The few-shot prefix is kept once, not per query. :class:`KeptPositions` holds at most its byte
budget of batches, dropping those least recently used first (never one used in the current
call); a batch that does not fit is scored by the full pass instead.

Only a cache whose every layer keeps all its positions and grows by appending
(:func:`appendable`) can be extended this way. A sliding-window layer (Gemma 3, Mistral with a
window) keeps only the last positions of the padded batch, which are not the same positions for
rows of different lengths: such models take the full pass.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Per layer: keys and values, each (rows, key/value heads, positions, head size). The caches
# themselves are typed Any: transformers types their layers loosely.
Kept = list[tuple[torch.Tensor, torch.Tensor]]


def appendable(cache: object) -> bool:
    """Whether every layer of ``cache`` holds all its positions and appends new ones (a full
    attention :class:`~transformers.cache_utils.DynamicLayer`, not a subclass that slides or
    compresses): then the kept positions plus one new token are exactly the full pass's."""
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer
                                                   for layer in cache.layers)


def bytes_per_position(cache: Any) -> int:
    """Bytes of keys and values one row's position takes over all layers of ``cache``."""
    return sum(tensor.element_size() * tensor.shape[1] * tensor.shape[3]
               for layer in cache.layers for tensor in (layer.keys, layer.values))


def positions_from(cache: Any, start: int) -> Kept:
    """Each layer's keys and values from position ``start`` on, copied: a slice would keep the
    whole tensor, the rows' repeated prefix included, alive."""
    return [(layer.keys[:, :, start:].clone(), layer.values[:, :, start:].clone())
            for layer in cache.layers]


def extended(prefix: Any, kept: Kept, rows: int) -> Any:
    """A new cache: ``prefix`` (one row) repeated for ``rows`` rows, then ``kept``. Neither is
    changed, so both serve the next condition as they are."""
    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(rows)
    for layer, (keys, values) in enumerate(kept):
        cache.update(keys, values, layer)
    return cache


def kept_bytes(kept: Kept) -> int:
    return sum(t.numel() * t.element_size() for pair in kept for t in pair)


class KeptPositions:
    """The unchanged model's prefix cache and, per batch of queries, the keys and values of its
    positions but the last, within ``budget`` bytes (the prefix not counted).

    >>> kept = KeptPositions(budget=100)
    >>> kept.start_call()
    >>> kept.room_for(80), kept.room_for(120)
    (True, False)
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.prefix: Any = None  # an appendable cache of the prefix, one row
        self._batches: OrderedDict[Hashable, Kept] = OrderedDict()  # least recently used first
        self._used: set[Hashable] = set()  # by the current call: never dropped for room
        self.bytes = 0

    def start_call(self) -> None:
        self._used.clear()

    def get(self, key: Hashable) -> Kept | None:
        kept = self._batches.get(key)
        if kept is not None:
            self._batches.move_to_end(key)
            self._used.add(key)
        return kept

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes fit, once batches of earlier calls are dropped as needed,
        least recently used first."""
        while self.bytes + size > self.budget:
            oldest = next((key for key in self._batches if key not in self._used), None)
            if oldest is None:
                return False
            self.bytes -= kept_bytes(self._batches.pop(oldest))
        return True

    def put(self, key: Hashable, kept: Kept) -> None:
        self._batches[key] = kept
        self._used.add(key)
        self.bytes += kept_bytes(kept)

    def clear(self) -> None:
        self.prefix = None
        self._batches.clear()
        self._used.clear()
        self.bytes = 0
