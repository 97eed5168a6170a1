"""One batched pass over the data accumulating every neuron's statistics
(:mod:`emoneuron.recording.statistics`): activations are reduced inside the forward hook
(:mod:`emoneuron.recording.accumulator`) and never kept.

Token policies decide which positions count: ``dialogue`` (default) the tokens of the turns' own
words, excluding speaker tags and line breaks; ``last`` the final token of each dialogue; ``all``
every token. The token's position of a top-k activation is not kept: finding it in the hook cost
more than everything else together, and a card finds it again by running that one dialogue
(:mod:`emoneuron.causal.experiments.cards`).

With ``RecordConfig(residual=True)`` the same pass also keeps each dialogue's mean residual
stream over its own words, per residual layer (:func:`word_means`): the features of the
label-free probe and the emotion directions
(:func:`emoneuron.causal.evaluation.probe.residual_features`), which a run takes for its
identification split from its recording instead of a second pass over the same dialogues.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from emoneuron.data.render import render_dialogue, tokens_in_spans
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.executors import Executor, LocalExecutor
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.accumulator import Accumulator, BatchContext
from emoneuron.recording.config import RecordConfig, TokenPolicy
from emoneuron.recording.kernel import statistics_kernel
from emoneuron.recording.statistics import Recording, dialogue_group, dialogue_hash


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    counted: torch.Tensor  # (B, T) bool: positions the token policy counts
    words: torch.Tensor  # (B, T) bool: the dialogue's own words, whatever the policy
    emotion_index: torch.Tensor  # (B,)
    record_index: torch.Tensor  # (B,) position of each row's record in the input sequence


def encode_for_recording(loaded: LoadedModel, records: Sequence[Record],
                         token_policy: TokenPolicy, batch_size: int) -> Iterator[EncodedBatch]:
    """Length-bucketed, right-padded batches with the token policy's position mask and the
    own-words mask (what policy ``dialogue`` counts); each batch holds one emotion's dialogues,
    so the recorder adds its histograms in one piece. The batches depend on the dialogues'
    emotions and lengths only, never on the policy."""
    encoded = []
    for record in records:
        rendered = render_dialogue(record)
        tokens = loaded.tokenizer(rendered.text, return_offsets_mapping=True,
                                  add_special_tokens=True)
        ids: list[int] = tokens["input_ids"]
        words = tokens_in_spans(tokens["offset_mapping"], rendered.spans)
        if token_policy == "all":
            counted = [True] * len(ids)
        elif token_policy == "last":
            counted = [False] * (len(ids) - 1) + [True]
        else:
            counted = words
        encoded.append((ids, counted, words, EMOTIONS.index(record.emotion)))
    order = sorted(range(len(encoded)), key=lambda i: (encoded[i][3], len(encoded[i][0])))
    chunks = []
    for _, same_emotion in itertools.groupby(order, key=lambda i: encoded[i][3]):
        members = list(same_emotion)
        chunks += [members[start:start + batch_size]
                   for start in range(0, len(members), batch_size)]
    pad_id = int(loaded.tokenizer.pad_token_id)
    for indices in chunks:
        chunk = [encoded[i] for i in indices]
        length = max(len(ids) for ids, _, _, _ in chunk)
        input_ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), length), dtype=torch.long)
        counted_mask = torch.zeros((len(chunk), length), dtype=torch.bool)
        words_mask = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, (ids, counted, words, _) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            counted_mask[row, :len(ids)] = torch.tensor(counted)
            words_mask[row, :len(ids)] = torch.tensor(words)
        yield EncodedBatch(input_ids, attention, counted_mask, words_mask,
                           torch.tensor([emotion for *_, emotion in chunk]),
                           torch.tensor(indices))


def word_means(hidden_states: Sequence[torch.Tensor], batch: EncodedBatch,
               records: Sequence[Record]) -> torch.Tensor:
    """(B, len(hidden_states), hidden) float32 on the CPU: per row of ``batch`` (of
    ``records``), the mean of each (B, T, hidden) state over the dialogue's own words
    (:attr:`EncodedBatch.words`; pads are never words). A :class:`UserError` names a dialogue
    without words, whose mean would be 0/0.

    >>> word_means(body(..., output_hidden_states=True).hidden_states,  # doctest: +SKIP
    ...            batch, records).shape
    torch.Size([16, 31, 576])
    """
    counts = batch.words.sum(1)
    if not counts.all():
        empty = records[int(batch.record_index[int(torch.argmin(counts))])]
        raise UserError(f"dialogue {empty.id!r} has no words to read; drop it or give its "
                        "turns some text")
    return torch.stack([_mean_over(state, batch.words) for state in hidden_states], dim=1)


def _mean_over(state: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """(B, hidden) float32 on the CPU: the mean of ``state`` (B, T, hidden) over the counted
    positions. On the state's own device: layers of a model split over devices return their
    states where they ran."""
    weights = counted.to(state.device, torch.float32)
    total = torch.einsum("bt,bth->bh", weights, state.float())
    return (total / weights.sum(1, keepdim=True)).cpu()


@contextmanager
def site_hooks(loaded: LoadedModel, site: str,
               receive: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """While active, every forward calls ``receive(layer, tensor)`` with each layer's tensor at
    ``site`` (a module's input or output, as the adapter declares it)."""
    spec = loaded.adapter.site(site)

    def receiver(layer: int) -> Callable[[torch.Tensor], None]:
        return lambda tensor: receive(layer, tensor)

    handles = [spec.hook(module, receiver(layer))
               for layer, module in enumerate(loaded.adapter.site_modules(loaded.model, site))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_arguments(records: Sequence[Record], config: RecordConfig) -> None:
    """A TypeError or ValueError naming the argument of :func:`record` it cannot record: no
    dialogue at all (the statistics would be all zero, as if no neuron fired), or one of
    another class than the six emotions."""
    if not isinstance(config, RecordConfig):
        raise TypeError(f"record: config must be a RecordConfig, got {config!r}")
    if not records:
        raise ValueError("record: records is empty; give at least one dialogue of each emotion "
                         "to compare")
    other = next((r for r in records if r.emotion not in EMOTIONS), None)
    if other is not None:
        raise ValueError(f"record: records holds {other.id!r} of emotion {other.emotion!r}; "
                         f"record dialogues of {', '.join(EMOTIONS)} only (select_classes "
                         "drops the neutral ones)")


def record(loaded: LoadedModel, records: Sequence[Record],
           config: RecordConfig = RecordConfig(), progress: bool = True) -> Recording:
    """Run the model once over ``records`` and return the neurons' statistics at the config's
    site, with each dialogue's :func:`word_means` of the residual stream (rows in the order of
    ``records``) where ``config.residual`` asks for them.

    >>> recording = record(load("smollm2-135m"), synthesize(2, max_turns=2),  # doctest: +SKIP
    ...                    RecordConfig(token_policy="last"))
    >>> recording.stats().active.shape  # doctest: +SKIP
    torch.Size([6, 30, 1536])
    """
    _check_arguments(records, config)
    site, groups, group_seed = config.site, config.groups, config.group_seed
    loaded.adapter.site(site)  # a site this family lacks fails before any work
    device = loaded.device
    accumulator = Accumulator(loaded.n_layers, loaded.width, groups, config.top_k, device,
                               statistics_kernel(config.kernel))
    # The current batch's context on each device its layers' activations arrive on.
    context: dict[torch.device, BatchContext] = {}

    def reduce(layer: int, tensor: torch.Tensor) -> None:
        if tensor.device not in context:
            context[tensor.device] = context[device].to(tensor.device)
        accumulator.add(layer, tensor, context[tensor.device])

    cells = torch.tensor([EMOTIONS.index(r.emotion) * groups
                          + dialogue_group(r.id, groups, group_seed) for r in records])
    hashes = torch.tensor([dialogue_hash(r.id) for r in records], dtype=torch.int64)
    # Recording needs no logits: the decoder body alone skips the unembedding.
    body = loaded.model.base_model
    batches = list(encode_for_recording(loaded, records, config.token_policy,
                                        config.batch_size))
    residual = (torch.zeros((len(records), loaded.n_layers + 1, loaded.hidden))
                if config.residual else None)
    bar = tqdm(total=sum(int(b.attention_mask.sum()) for b in batches), unit="tok",
               desc="record", disable=not progress)
    with torch.inference_mode(), site_hooks(loaded, site, reduce):
        for batch in batches:
            counted = batch.counted.to(device)
            cell = cells[batch.record_index].to(device)
            context.clear()
            context[device] = BatchContext.of(counted, cell, int(batch.emotion_index[0]),
                                              hashes[batch.record_index].to(device))
            accumulator.tokens.index_add_(0, cell, counted.sum(1).double())
            output = body(input_ids=batch.input_ids.to(device),
                          attention_mask=batch.attention_mask.to(device),
                          output_hidden_states=config.residual)
            if residual is not None:
                residual[batch.record_index] = word_means(output.hidden_states, batch, records)
            bar.update(int(batch.attention_mask.sum()))
    bar.close()
    return accumulator.recording(site, config.token_policy, group_seed, residual)


SHARDS_PER_WORKER = 4  # a lost worker costs a quarter of its share, and loads stay balanced


def shard_count(executor: Executor, requested: int = 0) -> int:
    """How many shards :func:`record_sharded` should use: one pass in this process; on remote
    workers ``requested``, or SHARDS_PER_WORKER per worker when it is 0."""
    if isinstance(executor, LocalExecutor):
        return 1
    return requested or SHARDS_PER_WORKER * executor.workers


@dataclass(frozen=True)
class _RecordShard:
    """The task that records one shard on a worker."""

    config: RecordConfig

    def __call__(self, loaded: LoadedModel, shard: Sequence[Record]) -> Recording:
        return record(loaded, shard, self.config, progress=False)


def record_sharded(executor: Executor, loaded: LoadedModel, records: Sequence[Record],
                   shards: int, setup: Callable[[], LoadedModel] | None = None,
                   config: RecordConfig = RecordConfig(), progress: bool = True) -> Recording:
    """:func:`record` over ``shards`` contiguous slices of ``records``, each recorded by a worker
    of ``executor`` (which loads the model with ``setup``; a local executor uses ``loaded``)
    and merged in slice order (the executor delivers results in item order), so residual means
    keep the rows of ``records``. Equal to one pass up to float rounding: shards batch the
    dialogues differently, and float64 sums are added in another order. One shard in this
    process is exactly :func:`record`, with its token progress bar."""
    if shards < 1:
        raise UserError(f"shards ({shards}) must be at least 1")
    if shards == 1 and isinstance(executor, LocalExecutor):
        return record(loaded, records, config, progress)
    bounds = [len(records) * i // shards for i in range(shards + 1)]
    parts = [list(records[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    task = _RecordShard(config)
    if not parts:
        return task(loaded, [])
    merged: list[Recording] = []

    def deliver(_index: int, part: Recording) -> None:
        merged[:] = [merged[0].merge(part) if merged else part]

    executor.map(task, parts, deliver, setup, state=loaded, progress=progress,
                 desc="record shards")
    return merged[0]
