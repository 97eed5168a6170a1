"""Gradient x activation attribution of every neuron to the classifier's decision.

For each dialogue, the objective is the gold label's log-probability among the six labels: the
log-softmax over the six label-word logits at the scored position after ``Emotion:``, the
quantity :class:`emoneuron.causal.evaluation.classifier.Classifier` decides by (its argmax over the
label words is the same). A neuron's attribution is its activation times the objective's gradient
with respect to it, summed over the dialogue's query positions (everything after the shared few-shot
prefix, dialogue and prompt words alike). To first order it is how much the gold label's
log-probability falls when the neuron is zeroed at those positions: positive means the neuron
supports the right answer.

The prompt, the encoding and the batching are the classifier's own (:meth:`Classifier.encode`,
:meth:`Classifier.query_batch`, :meth:`Classifier.run_batch`): the few-shot prefix is run once,
without gradient, and its key/value cache is reused by every batch. Its activations are the same
for every dialogue, so they carry no information about the dialogue and are not attributed;
the queries are right-padded after the cache, one forward and one backward pass per batch, and
padding positions are masked out (they precede nothing the objective reads, so their gradient is
zero anyway). The objective is not calibrated: the content-free dialogue's offset is a constant
per label.

Sites: the default is the down projection's input. For zero ablation the attribution at
``mlp.activation`` is the same number in a gated MLP: the down projection's input is
``act(gate) * up``, zeroing either factor zeroes the product, and ``a * dL/d(a*u) * u`` equals
``(a*u) * dL/d(a*u)``.

The model's weights, dtype and attention implementation are left as they are: the embedding's
output is made to require a gradient for the duration of the pass, so the graph exists even
where the parameters need none, and every hook is removed on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.config import DEFAULT_GROUPS
from emoneuron.recording.recorder import site_hooks
from emoneuron.recording.statistics import dialogue_group


@contextmanager
def _embeddings_require_grad(classifier: Classifier) -> Iterator[None]:
    def start_graph(_module: torch.nn.Module, _args: tuple[Any, ...],
                    output: torch.Tensor) -> torch.Tensor:
        return output if output.requires_grad else output.detach().requires_grad_()

    embedding = classifier.loaded.model.get_input_embeddings()
    handle = embedding.register_forward_hook(start_graph)
    try:
        yield
    finally:
        handle.remove()


def attribute(classifier: Classifier, records: Sequence[Record], site: str = DEFAULT_SITE,
              groups: int = DEFAULT_GROUPS, group_seed: int = 0,
              progress: bool = True) -> AttributionStats:
    """Summed gradient x activation attribution of ``records`` per (emotion, group, layer,
    neuron), batched like :meth:`Classifier.predict`."""
    if groups < 1:
        raise UserError(f"groups ({groups}) must be at least 1")
    if classifier.answer_format != "label":
        raise UserError(f"attribution scores the label word, not the {classifier.answer_format} "
                        "format's answers: attribute with a label-format classifier")
    loaded = classifier.loaded
    loaded.adapter.site(site)  # an unknown site fails before any work
    stats = AttributionStats.zeros(loaded.n_layers, loaded.width, groups, site, group_seed)
    suffixes = [classifier.encode(record)[0] for record in records]
    order = sorted(range(len(records)), key=lambda i: len(suffixes[i]))
    cells = torch.tensor([EMOTIONS.index(r.emotion) * groups
                          + dialogue_group(r.id, groups, group_seed) for r in records])
    gold = torch.tensor([EMOTIONS.index(r.emotion) for r in records])
    total = stats.total.view(-1, loaded.n_layers, loaded.width)
    with torch.no_grad():
        prefix_cache = classifier.prefix_cache()
    bar = tqdm(total=len(records), unit="dialogue", desc="attribute", disable=not progress)
    for start in range(0, len(order), classifier.batch_size):
        rows = torch.tensor(order[start:start + classifier.batch_size])
        per_dialogue = _batch_attribution(classifier, [suffixes[i] for i in rows], gold[rows],
                                          prefix_cache, site)
        total.index_add_(0, cells[rows], per_dialogue)
        stats.dialogues.view(-1).index_add_(0, cells[rows],
                                            torch.ones(len(rows), dtype=torch.float64))
        bar.update(len(rows))
    bar.close()
    return stats


def _batch_attribution(classifier: Classifier, suffixes: list[list[int]], gold: torch.Tensor,
                       prefix_cache: Any, site: str) -> torch.Tensor:
    """(rows, L, W) float64: each row's attribution summed over its real query positions."""
    batch = classifier.query_batch(suffixes)
    activations: dict[int, torch.Tensor] = {}

    def keep(layer: int, tensor: torch.Tensor) -> None:
        activations[layer] = tensor

    with (torch.enable_grad(), _embeddings_require_grad(classifier),
          site_hooks(classifier.loaded, site, keep)):
        log_probabilities = classifier.run_batch(batch, prefix_cache)
        labels = torch.log_softmax(log_probabilities[:, classifier.answer_ids.to(
            log_probabilities.device)], dim=-1)
        objective = labels[torch.arange(len(gold)), gold.to(labels.device)].sum()
        layers = sorted(activations)
        gradients = torch.autograd.grad(objective, [activations[layer] for layer in layers])
    real = batch.attention_mask[:, -batch.input_ids.shape[1]:].bool()
    return torch.stack([
        (activations[layer] * gradient).detach().float().cpu()
        .masked_fill(~real[:, :, None], 0).sum(1).double()
        for layer, gradient in zip(layers, gradients, strict=True)], dim=1)
