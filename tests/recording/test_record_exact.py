"""The recorder's fast hook gives bit for bit the statistics of a plain reference that keeps each
layer's whole activation and reduces it the obvious way (masked copies, a comparison per value,
a one-hot histogram), so speeding up the hook never changes a recorded value: with the compiled
kernel and with torch operators alike.

The roundings that are part of the definition, not of the implementation: a sequence's sums
of values and of squares are float32 sums in token order, then added into the cells in
float64; a value's histogram bin is read from its float16 rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.config import Kernel, RecordConfig
from emoneuron.recording.kernel import compiled_kernel
from emoneuron.recording.recorder import encode_for_recording, record, site_hooks
from emoneuron.recording.statistics import (
    N_BINS,
    best_indices,
    bin_edges,
    dialogue_group,
    dialogue_hash,
    octave_bins,
)

MakeTiny = Callable[[str], LoadedModel]


def _reference(loaded: LoadedModel, records: list[Record],
               config: RecordConfig) -> dict[str, torch.Tensor]:
    """Every field of a :class:`Recording`, in its layout, computed batch by batch from the
    layers' captured activations."""
    groups, layers, width, k = config.groups, loaded.n_layers, loaded.width, config.top_k
    cells = (len(EMOTIONS), groups)
    out = {"tokens": torch.zeros(cells, dtype=torch.float64),
           **{name: torch.zeros((*cells, layers, width), dtype=torch.float64)
              for name in ("active", "sum", "sum_sq")},
           "histogram": torch.zeros((len(EMOTIONS), layers, width, N_BINS), dtype=torch.int32),
           "top_values": torch.full((layers, k, width), -torch.inf),
           "top_dialogue": torch.zeros((layers, k, width), dtype=torch.int64)}
    captured: dict[int, torch.Tensor] = {}
    batches = encode_for_recording(loaded, records, config.token_policy, config.batch_size)
    with torch.inference_mode(), site_hooks(loaded, config.site, captured.__setitem__):
        for batch in batches:
            loaded.model.base_model(input_ids=batch.input_ids,
                                    attention_mask=batch.attention_mask)
            members = [records[int(i)] for i in batch.record_index]
            emotion = EMOTIONS.index(members[0].emotion)
            group = [dialogue_group(r.id, groups, config.group_seed) for r in members]
            hashes = torch.tensor([dialogue_hash(r.id) for r in members])
            mask = batch.counted
            for row, cell in enumerate(group):
                out["tokens"][emotion, cell] += int(mask[row].sum())
            for layer, activation in captured.items():
                values = activation.float()
                active = ((values > 0) & mask[:, :, None]).sum(dim=1).double()
                for row, cell in enumerate(group):
                    sums, squares = torch.zeros(width), torch.zeros(width)
                    for token in values[row][mask[row]]:
                        sums += token
                        squares += token * token
                    out["active"][emotion, cell, layer] += active[row]
                    out["sum"][emotion, cell, layer] += sums.double()
                    out["sum_sq"][emotion, cell, layer] += squares.double()
                bins = octave_bins(values[mask]).long()
                out["histogram"][emotion, layer] += torch.nn.functional.one_hot(
                    bins, N_BINS).sum(dim=0).int()
                strongest = values.masked_fill(~mask[:, :, None], -torch.inf).amax(dim=1)
                candidates = torch.cat([out["top_values"][layer], strongest])
                dialogues = torch.cat([out["top_dialogue"][layer],
                                       hashes[:, None].expand(-1, width)])
                order = best_indices(candidates, dialogues, k, dim=0)
                out["top_values"][layer] = candidates.gather(0, order)
                out["top_dialogue"][layer] = dialogues.gather(0, order)
    return out


@pytest.mark.parametrize("kernel", ("c", "torch"))
@pytest.mark.parametrize("family", ("llama", "gpt2"))
@pytest.mark.parametrize("policy", ("all", "dialogue", "last"))
def test_recording_is_bit_identical_to_the_reference(make_tiny: MakeTiny, family: str,
                                                     policy: str, kernel: Kernel) -> None:
    if kernel == "c" and compiled_kernel() is None:
        pytest.skip("no C compiler on this machine")
    loaded = make_tiny(family)
    # Long dialogues: over short ones most summation orders round alike, and the comparison
    # would not notice a changed one.
    records = synthesize(2, seed=5, max_turns=5)
    config = RecordConfig(token_policy=policy, batch_size=3, groups=4, top_k=3, kernel=kernel)
    recording = record(loaded, records, config, progress=False)
    expected = _reference(loaded, records, config)
    for name, tensor in expected.items():
        assert torch.equal(getattr(recording, name), tensor), name
    # Not vacuous: values of both signs were counted, and every top-k slot of a neuron is
    # filled when there are at least k dialogues.
    assert 0 < recording.active.sum() < recording.tokens.sum() * loaded.n_layers * loaded.width
    assert recording.sum_sq.sum() > 0 and recording.histogram.sum() > 0
    assert torch.isfinite(recording.top_values).all()


def test_octave_bins_agree_with_the_bin_edges() -> None:
    """A bin is the number of edges at or below the value, for values of every octave and sign
    away from an edge (within 2^-11 of one, relatively, float16 rounding may move them up)."""
    generator = torch.Generator().manual_seed(0)
    exponents = torch.empty(20_000).uniform_(-16.0, 8.0, generator=generator)
    signs = torch.randint(0, 2, (20_000,), generator=generator) * 2 - 1
    values = (signs * 2.0 ** exponents).float()
    values = torch.cat([values, torch.tensor([0.0, 1e30, -1e30, 2.0 ** -20, -(2.0 ** -20)])])
    edges = bin_edges().float()
    distance = (values[:, None].abs() / edges[edges != 0].abs()[None, :]).log2().abs()
    away = distance.min(dim=1).values > 2.0 ** -10
    expected = torch.searchsorted(edges, values[away], right=True)
    assert away.sum() > 19_000
    assert torch.equal(octave_bins(values[away]), expected)
    assert set(expected.tolist()) == set(range(N_BINS))
