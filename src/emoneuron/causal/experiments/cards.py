"""Neuron cards: what activates a neuron most, and what it writes towards the vocabulary.

Top activations come from the recording's bounded top-k (value and dialogue hash per neuron, one
per dialogue; :mod:`emoneuron.recording.recorder`); when the records are at hand, each such dialogue
is run again to find the token and show it in context. The vocabulary projection needs only the
model: the neuron's column of the down projection, passed through the final norm (as
``norm(v) - norm(0)``, which removes a LayerNorm bias and leaves an RMSNorm as it is) and the
unembedding; the largest logits are the
tokens it promotes, the smallest those it suppresses. This is the neuron's direct effect on the
output, per unit of activation: it ignores the norm's dependence on the rest of the residual
stream and every later layer. At the ``mlp.activation`` and ``mlp.pre_activation`` sites of a
gated MLP the neuron reaches the down projection multiplied by its ``up`` value, whose sign
varies; read the projection as the default site's.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import align_module_device

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.io import atomic_open, write_json
from emoneuron.layout import CARD_INDEX
from emoneuron.models.loading import LoadedModel, compute_device
from emoneuron.recording.config import TokenPolicy
from emoneuron.recording.recorder import encode_for_recording, site_hooks
from emoneuron.recording.statistics import Recording, dialogue_hash
from emoneuron.selection.identify import NeuronSets

CONTEXT_BEFORE = 8
CONTEXT_AFTER = 3


@dataclass(frozen=True)
class Example:
    """One of a neuron's strongest activations: the value, its dialogue and token in context."""

    value: float
    position: int | None  # None when the dialogue's records are not at hand
    dialogue: str  # the record id, or the hash in hex when the records are not at hand
    emotion: str | None
    token: str | None
    context: str | None  # the token in [[double brackets]] with a few neighbours

    def shown(self) -> str:
        return self.context if self.context is not None else "(dialogue text not given)"


@dataclass(frozen=True)
class VocabEffect:
    """A token the neuron's output direction promotes (positive logit) or suppresses."""

    token: str
    logit: float


@dataclass(frozen=True)
class NeuronCard:
    """What ``emoneuron neuron`` shows of one neuron (:func:`neuron_card`): the tokens its
    output direction promotes and suppresses, its strongest dialogues, how often and how strongly
    it fires per emotion, and the emotion sets that hold it."""

    model: str
    site: str
    layer: int
    index: int
    promoted: list[VocabEffect]
    suppressed: list[VocabEffect]
    examples: list[Example]
    frequency: dict[str, float] | None  # P(active | emotion)
    mean: dict[str, float] | None  # mean activation per emotion
    member_of: list[str]  # emotions whose set holds this neuron

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _decode(loaded: LoadedModel, ids: Sequence[int]) -> str:
    return str(loaded.tokenizer.decode(list(ids)))


def check_neuron(layer: int, index: int, shape: tuple[int, int] | None = None,
                 model: str = "the model") -> None:
    """A UserError unless neuron (``layer``, ``index``) exists in a model of ``shape``
    (layers, neurons per layer); with no shape known yet, unless both are 0 or more."""
    if shape is None:
        if layer < 0 or index < 0:
            raise UserError(f"neuron ({layer}, {index}) does not exist in {model}: layers and "
                            "indices count from 0")
        return
    n_layers, width = shape
    if not (0 <= layer < n_layers and 0 <= index < width):
        raise UserError(f"neuron ({layer}, {index}) does not exist in {model}: layers "
                        f"0-{n_layers - 1}, indices 0-{width - 1}")


def vocab_projection(loaded: LoadedModel, layer: int, index: int,
                     k: int = 10) -> tuple[list[VocabEffect], list[VocabEffect]]:
    """The ``k`` tokens the neuron's output direction promotes most and suppresses most (the
    whole vocabulary when it has fewer)."""
    check_neuron(layer, index, (loaded.n_layers, loaded.width), loaded.name)
    if k < 1:
        raise ValueError(f"k={k}: give at least one token to show")
    model, adapter = loaded.model, loaded.adapter
    # A model dispatched with a device_map may keep these weights on other devices, or
    # offloaded (on the meta device until accelerate loads them): bring them in while used.
    down_projection = adapter.site_modules(model)[layer]
    with (torch.inference_mode(), align_module_device(down_projection),
          align_module_device(adapter.unembedding_module(model))):
        norm = adapter.final_norm(model)
        direction = adapter.down_projection(model, layer)[:, index][None].to(
            compute_device(norm))
        normed = (norm(direction) - norm(torch.zeros_like(direction)))[0]
        unembedding = adapter.unembedding(model)
        logits = unembedding @ normed.to(unembedding.device)
    logits = logits.float().cpu()
    vocab = min(len(loaded.tokenizer), logits.shape[0])  # padded vocabularies: real ids only
    logits = logits[:vocab]

    def effects(ids: torch.Tensor) -> list[VocabEffect]:
        return [VocabEffect(_decode(loaded, [int(i)]), round(float(logits[i]), 4))
                for i in ids]

    k = min(k, vocab)
    return (effects(logits.topk(k).indices), effects((-logits).topk(k).indices))


class _DialogueActivations:
    """Neurons' site values over one dialogue's tokens. The ``neurons`` named up front (the
    cards to be written) are all captured by one forward pass per dialogue; any other neuron
    by one pass per (dialogue, layer)."""

    def __init__(self, loaded: LoadedModel, site: str, token_policy: TokenPolicy,
                 neurons: Collection[tuple[int, int]] = ()) -> None:
        self.loaded, self.site, self.token_policy = loaded, site, token_policy
        self.neurons = frozenset(neurons)
        self.tokens: dict[str, tuple[list[int], torch.Tensor]] = {}
        self.columns: dict[tuple[str, int, int], torch.Tensor] = {}

    def get(self, item: Record, layer: int, index: int
            ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Token ids, counted mask (T,) and the neuron's site values (T,) over ``item``."""
        key = (item.id, layer, index)
        if key not in self.columns:
            wanted = self.neurons if (layer, index) in self.neurons else {(layer, index)}
            self._capture(item, wanted)
        return (*self.tokens[item.id], self.columns[key])

    def _capture(self, item: Record, wanted: Collection[tuple[int, int]]) -> None:
        batch = next(encode_for_recording(self.loaded, [item], self.token_policy, 1))
        by_layer: dict[int, list[int]] = {}
        for layer, index in wanted:
            by_layer.setdefault(layer, []).append(index)

        def receive(at: int, tensor: torch.Tensor) -> None:
            for index in by_layer.get(at, ()):
                self.columns[(item.id, at, index)] = tensor[0, :, index].float().cpu()

        device = self.loaded.device
        with torch.inference_mode(), site_hooks(self.loaded, self.site, receive):
            self.loaded.model.base_model(input_ids=batch.input_ids.to(device),
                                         attention_mask=batch.attention_mask.to(device))
        self.tokens[item.id] = (batch.input_ids[0].tolist(), batch.counted[0])


def top_examples(loaded: LoadedModel, recording: Recording, layer: int, index: int,
                 records: Sequence[Record] = (),
                 activations: _DialogueActivations | None = None) -> list[Example]:
    """The recording's top activations of the neuron, best first (one per dialogue). Where
    ``records`` holds the dialogue, it is run again to find the token (the recorder keeps the
    value and the dialogue, not the position) and show it in context."""
    activations = activations or _DialogueActivations(loaded, recording.site,
                                                      recording.token_policy)
    by_hash = {dialogue_hash(r.id): r for r in records}
    examples = []
    for value, hashed in zip(recording.top_values[layer, :, index].tolist(),
                             recording.top_dialogue[layer, :, index].tolist(), strict=True):
        if value == float("-inf"):
            continue  # fewer dialogues than k
        found = by_hash.get(hashed)
        if found is None:
            examples.append(Example(round(value, 4), None, f"{hashed & (2**64 - 1):016x}", None,
                                    None, None))
            continue
        ids, counted, values = activations.get(found, layer, index)
        position = int(values.masked_fill(~counted, -torch.inf).argmax())
        token = _decode(loaded, [ids[position]])
        context = (_decode(loaded, ids[max(0, position - CONTEXT_BEFORE):position])
                   + f"[[{token}]]"
                   + _decode(loaded, ids[position + 1:position + 1 + CONTEXT_AFTER]))
        examples.append(Example(round(value, 4), position, found.id, found.emotion, token,
                                context))
    return examples


def neuron_card(loaded: LoadedModel, layer: int, index: int, recording: Recording | None = None,
                records: Sequence[Record] = (), sets: NeuronSets | None = None,
                k: int = 10, activations: _DialogueActivations | None = None) -> NeuronCard:
    promoted, suppressed = vocab_projection(loaded, layer, index, k)
    frequency = mean = None
    examples: list[Example] = []
    if recording is not None:
        if (recording.n_layers, recording.width) != (loaded.n_layers, loaded.width):
            raise UserError(f"the recording has {recording.n_layers} x {recording.width} "
                            f"neurons, {loaded.name} {loaded.n_layers} x {loaded.width}: "
                            "pass the recording of this model")
        stats = recording.stats()
        tokens = stats.tokens.clamp(min=1)
        frequency = {e: round(float(stats.active[i, layer, index] / tokens[i]), 4)
                     for i, e in enumerate(EMOTIONS)}
        mean = {e: round(float(stats.sum[i, layer, index] / tokens[i]), 4)
                for i, e in enumerate(EMOTIONS)}
        examples = top_examples(loaded, recording, layer, index, records, activations)
    member_of = [] if sets is None else [
        e for e, ns in sets.emotions.items() if any((n.layer, n.index) == (layer, index)
                                                    for n in ns)]
    site = recording.site if recording is not None else (sets.site if sets else "n/a")
    return NeuronCard(loaded.name, site, layer, index, promoted, suppressed, examples,
                      frequency, mean, member_of)


def format_card(card: NeuronCard) -> str:
    """The card as plain text for the terminal."""
    lines = [f"neuron L{card.layer} #{card.index} of {card.model} (site {card.site})"]
    if card.member_of:
        lines.append("in the sets of: " + ", ".join(card.member_of))
    if card.frequency is not None and card.mean is not None:
        lines.append("P(active | emotion): " + ", ".join(
            f"{e} {v:.3f}" for e, v in card.frequency.items()))
        lines.append("mean activation:     " + ", ".join(
            f"{e} {v:+.3f}" for e, v in card.mean.items()))
    lines.append("promotes:   " + ", ".join(f"{e.token!r} {e.logit:+.2f}" for e in card.promoted))
    lines.append("suppresses: " + ", ".join(f"{e.token!r} {e.logit:+.2f}"
                                            for e in card.suppressed))
    if card.examples:
        lines.append("top activations:")
        for example in card.examples:
            lines.append(f"  {example.value:+.3f}  {example.dialogue} ({example.emotion or '?'})"
                         f"  {example.shown()!r}")
    return "\n".join(lines)


def card_html(card: NeuronCard) -> str:
    """A self-contained HTML fragment (no scripts, no styles) for the report to embed or link."""
    def tokens(effects: list[VocabEffect]) -> str:
        return ", ".join(f"<code>{html.escape(e.token)}</code>" for e in effects)

    parts = [f'<section class="neuron-card" id="L{card.layer}-N{card.index}">',
             f"<h3>Layer {card.layer}, neuron {card.index}</h3>",
             f"<p>Site {html.escape(card.site)}"
             + (f"; in the sets of {', '.join(card.member_of)}" if card.member_of else "")
             + "</p>",
             f"<p>Promotes {tokens(card.promoted)}</p>",
             f"<p>Suppresses {tokens(card.suppressed)}</p>"]
    if card.examples:
        parts.append("<ol>")
        for example in card.examples:
            parts.append(f"<li>{example.value:+.3f} {html.escape(example.dialogue)} "
                         f"({html.escape(example.emotion or '?')}): "
                         f"<q>{html.escape(example.shown())}</q></li>")
        parts.append("</ol>")
    parts.append("</section>")
    return "\n".join(parts)


def write_cards(loaded: LoadedModel, recording: Recording, records: Sequence[Record],
                sets: NeuronSets, out_dir: str | Path, per_emotion: int = 5) -> dict[str, Any]:
    """Cards (``L{layer}-N{index}.json`` and ``.html``) for each emotion's top ``per_emotion``
    neurons, and ``index.json`` mapping each emotion to its cards, best first."""
    out = Path(out_dir)
    carded = {(n.layer, n.index) for ns in sets.emotions.values() for n in ns[:per_emotion]}
    activations = _DialogueActivations(loaded, recording.site, recording.token_policy, carded)
    index: dict[str, list[dict[str, Any]]] = {}
    written: set[tuple[int, int]] = set()
    for emotion, neurons in sets.emotions.items():
        index[emotion] = []
        for neuron in neurons[:per_emotion]:
            name = f"L{neuron.layer}-N{neuron.index}"
            if (neuron.layer, neuron.index) not in written:
                card = neuron_card(loaded, neuron.layer, neuron.index, recording, records, sets,
                                   activations=activations)
                write_json(out / f"{name}.json", card.to_json())
                with atomic_open(out / f"{name}.html") as handle:
                    handle.write(card_html(card) + "\n")
                written.add((neuron.layer, neuron.index))
            index[emotion].append({"layer": neuron.layer, "index": neuron.index,
                                   "score": neuron.score, "json": f"{name}.json",
                                   "html": f"{name}.html"})
    payload = {"model": sets.model, "site": sets.site, "statistic": sets.config.statistic,
               "rule": sets.config.rule, "emotions": index}
    write_json(out / CARD_INDEX, payload)
    return payload
