"""Recording equals a brute-force, one-record-at-a-time computation, and its statistics add up.

The brute force captures every site activation with its own hooks on unpadded single records and
works out the counted positions from the tokenizer offsets and the rendered spans itself. The
recorder runs batched and right-padded, so agreement also shows that padding is never counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from mlp_reference import hooked_forward
from safetensors import safe_open
from safetensors.torch import save_file

from emoneuron.causal.evaluation.probe import residual_features
from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.errors import UserError
from emoneuron.executors import LocalExecutor
from emoneuron.models.config import DEFAULT_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import encode_for_recording, record, record_sharded
from emoneuron.recording.statistics import ActivationStats, Recording

# Llama (gated), Gemma 3 (gated, sliding-window layers) and GPT-2 (plain MLP, Conv1D).
RECORD_FAMILIES = ("llama", "gemma3", "gpt2")
POLICIES = ("all", "last", "dialogue")

MakeTiny = Callable[[str], LoadedModel]


def _site_activations(loaded: LoadedModel, ids: list[int]) -> list[torch.Tensor]:
    """Each layer's site input, (T, width), for one unpadded sequence."""
    captured: dict[int, torch.Tensor] = {}
    modules = loaded.adapter.site_modules(loaded.model)
    handles = [module.register_forward_pre_hook(
        lambda _m, args, layer=layer: captured.__setitem__(layer, args[0][0].detach().clone()))
        for layer, module in enumerate(modules)]
    hooked_forward(loaded, ids, handles)
    return [captured[layer] for layer in range(len(modules))]


def _counted_positions(loaded: LoadedModel, item: Record,
                       policy: str) -> tuple[list[int], list[bool]]:
    rendered = render_dialogue(item)
    encoding = loaded.tokenizer(rendered.text, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    if policy == "all":
        return ids, [True] * len(ids)
    if policy == "last":
        return ids, [position == len(ids) - 1 for position in range(len(ids))]
    # dialogue: a token counts when one of its characters is a character of some turn's words.
    in_turn = [False] * len(rendered.text)
    for start, end in rendered.spans:
        assert rendered.text[start:end].strip(), "span does not cover the turn's words"
        for char in range(start, end):
            in_turn[char] = True
    return ids, [any(in_turn[start:end]) for start, end in encoding["offset_mapping"]]


def _brute_force(loaded: LoadedModel, items: list[Record], policy: str) -> dict[str, torch.Tensor]:
    shape = (len(EMOTIONS), loaded.n_layers, loaded.width)
    expected = {"tokens": torch.zeros(len(EMOTIONS), dtype=torch.float64),
                **{name: torch.zeros(shape, dtype=torch.float64)
                   for name in ("active", "sum", "sum_sq")}}
    for item in items:
        ids, counted = _counted_positions(loaded, item, policy)
        emotion = EMOTIONS.index(item.emotion)
        mask = torch.tensor(counted)
        expected["tokens"][emotion] += int(mask.sum())
        for layer, activation in enumerate(_site_activations(loaded, ids)):
            values = activation[mask].double()
            expected["active"][emotion, layer] += (values > 0).sum(dim=0)
            expected["sum"][emotion, layer] += values.sum(dim=0)
            expected["sum_sq"][emotion, layer] += values.square().sum(dim=0)
    return expected


def _assert_stats_equal(actual: ActivationStats,
                        expected: ActivationStats | dict[str, torch.Tensor]) -> None:
    def get(source: ActivationStats | dict[str, torch.Tensor], name: str) -> torch.Tensor:
        return source[name] if isinstance(source, dict) else getattr(source, name)

    torch.testing.assert_close(actual.tokens, get(expected, "tokens"), rtol=0, atol=0)
    torch.testing.assert_close(actual.active, get(expected, "active"), rtol=0, atol=0)
    torch.testing.assert_close(actual.sum, get(expected, "sum"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(actual.sum_sq, get(expected, "sum_sq"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", RECORD_FAMILIES)
@pytest.mark.parametrize("policy", POLICIES)
def test_statistics_equal_brute_force(make_tiny: MakeTiny, records: list[Record], family: str,
                                      policy: str) -> None:
    loaded = make_tiny(family)
    # The batches really are padded, so agreement means padding is excluded.
    batches = list(encode_for_recording(loaded, records, policy, batch_size=3))
    assert any(bool((batch.attention_mask == 0).any()) for batch in batches)

    # _brute_force computes the down projection's input.
    stats = record(loaded, records,
                   RecordConfig(site=DEFAULT_SITE, token_policy=policy, batch_size=3),
                   progress=False).stats()
    expected = _brute_force(loaded, records, policy)

    assert stats.token_policy == policy
    assert stats.active.shape == (len(EMOTIONS), loaded.n_layers, loaded.width)
    _assert_stats_equal(stats, expected)
    # Guard against a vacuous comparison: real tokens were counted, activations vary in sign.
    present = {EMOTIONS.index(item.emotion) for item in records}
    for emotion in range(len(EMOTIONS)):
        if emotion in present:
            assert stats.tokens[emotion] > 0
        else:
            assert stats.tokens[emotion] == 0 and not stats.sum[emotion].any()
    assert 0 < stats.active.sum() < stats.tokens.sum() * loaded.n_layers * loaded.width


def test_policies_count_different_positions(make_tiny: MakeTiny, records: list[Record]) -> None:
    loaded = make_tiny("llama")
    tokens = {policy: record(loaded, records, RecordConfig(token_policy=policy, batch_size=3),
                             progress=False).stats().tokens for policy in POLICIES}
    assert tokens["last"].sum() == len(records)
    assert tokens["last"].sum() < tokens["dialogue"].sum() < tokens["all"].sum()


def test_batch_size_does_not_matter(make_tiny: MakeTiny, records: list[Record]) -> None:
    loaded = make_tiny("gpt2")
    one = record(loaded, records, RecordConfig(batch_size=1), progress=False)
    many = record(loaded, records, RecordConfig(batch_size=8), progress=False)
    _assert_stats_equal(many.stats(), one.stats())
    torch.testing.assert_close(many.histogram, one.histogram, rtol=0, atol=0)


@pytest.mark.parametrize("family", ("llama", "gpt2"))
def test_merge_is_additive(make_tiny: MakeTiny, records: list[Record], family: str) -> None:
    loaded = make_tiny(family)
    first, second = records[:5], records[5:]
    merged = (record(loaded, first, RecordConfig(batch_size=2), progress=False)
              .merge(record(loaded, second, RecordConfig(batch_size=3), progress=False)))
    whole = record(loaded, records, RecordConfig(batch_size=4), progress=False)
    _assert_stats_equal(merged.stats(), whole.stats())
    assert (merged.site, merged.token_policy) == (whole.site, whole.token_policy)
    # And the halves are not each equal to the whole (the merge did add something).
    assert merged.tokens.sum() > record(loaded, first, progress=False).tokens.sum()


def test_merge_refuses_different_policy(make_tiny: MakeTiny, records: list[Record]) -> None:
    loaded = make_tiny("llama")
    last = record(loaded, records[:2], RecordConfig(token_policy="last"), progress=False)
    every = record(loaded, records[:2], RecordConfig(token_policy="all"), progress=False)
    with pytest.raises(UserError, match="token"):
        last.merge(every)


@pytest.fixture(scope="module")
def llama_stats(make_tiny: MakeTiny, records: list[Record]) -> Recording:
    return record(make_tiny("llama"), records, RecordConfig(token_policy="last", batch_size=3),
                  progress=False)


def test_save_load_round_trip(llama_stats: Recording, tmp_path: Path) -> None:
    path = tmp_path / "stats.safetensors"
    llama_stats.save(path, {"model": "x"})
    loaded = Recording.load(path)
    for name in ("tokens", "active", "sum", "sum_sq", "histogram", "top_values",
                 "top_dialogue"):
        torch.testing.assert_close(getattr(loaded, name), getattr(llama_stats, name),
                                   rtol=0, atol=0)
    assert (loaded.site, loaded.token_policy) == (llama_stats.site, "last")
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["model"] == "x"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model"] == "x" and sidecar["token_policy"] == "last"
    assert sidecar["site"] == llama_stats.site and sidecar["groups"] == llama_stats.groups
    assert sidecar["tokens"] == dict(zip(EMOTIONS, llama_stats.stats().tokens.tolist(),
                                         strict=True))


@pytest.mark.parametrize("corruption", ["truncated", "garbage", "empty", "flipped_header"])
def test_corrupted_file_is_a_user_error(llama_stats: Recording, tmp_path: Path,
                                        corruption: str) -> None:
    path = tmp_path / "stats.safetensors"
    llama_stats.save(path, {"model": "x"})
    blob = path.read_bytes()
    if corruption == "truncated":
        path.write_bytes(blob[:len(blob) // 2])
    elif corruption == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif corruption == "empty":
        path.write_bytes(b"")
    else:  # garbage inside the JSON header, length prefix intact
        path.write_bytes(blob[:8] + b"\xff" * 16 + blob[24:])
    with pytest.raises(UserError, match=re.escape(path.name)):
        Recording.load(path)


def test_foreign_safetensors_file_is_a_user_error(tmp_path: Path) -> None:
    """A valid safetensors file that is not a statistics file (say a model's weights)."""
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(UserError, match=r"model\.safetensors"):
        Recording.load(path)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        Recording.load(tmp_path / "nope.safetensors")


def test_unknown_token_policy_raises(make_tiny: MakeTiny, records: list[Record]) -> None:
    with pytest.raises(UserError, match="first_token"):
        RecordConfig(token_policy="first_token")  # type: ignore[arg-type]


def test_record_names_records_it_cannot_record(make_tiny: Callable[[str], LoadedModel],
                                               records: list[Record]) -> None:
    """No dialogue at all once gave an all-zero recording, as if no neuron ever fired."""
    loaded = make_tiny("llama")
    with pytest.raises(ValueError, match="record: records is empty"):
        record(loaded, [], progress=False)
    neutral = Record(id="n0", emotion="neutral", turns=records[0].turns, source="test")
    with pytest.raises(ValueError, match="records holds 'n0' of emotion 'neutral'"):
        record(loaded, [*records, neutral], progress=False)
    with pytest.raises(TypeError, match="config must be a RecordConfig"):
        record(loaded, records, "dialogue", progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", RECORD_FAMILIES)
@pytest.mark.parametrize("policy", ("last", "dialogue"))
def test_residual_means_are_the_probe_features(make_tiny: MakeTiny, records: list[Record],
                                               family: str, policy: str) -> None:
    """The recording pass keeps exactly the features a second pass would compute: the batches
    are the same (they depend on emotions and lengths, not on the token policy), the forward
    and the reduction too, so the tolerance is zero. The rows are in record order: the fixture
    interleaves emotions and lengths, so the batches' order is another."""
    loaded = make_tiny(family)
    config = RecordConfig(token_policy=policy, batch_size=3)
    with_means = record(loaded, records, replace(config, residual=True), progress=False)
    features = residual_features(loaded, records, batch_size=3)
    assert with_means.residual_means is not None
    assert with_means.residual_means.shape == (len(records), loaded.n_layers + 1, loaded.hidden)
    torch.testing.assert_close(with_means.residual_means, features, rtol=0, atol=0)
    order = [int(i) for batch in encode_for_recording(loaded, records, policy, 3)
             for i in batch.record_index]
    assert order != sorted(order)
    # Each row is its own dialogue's: read alone (unpadded, so only float rounding may differ).
    alone = residual_features(loaded, records[2:3], batch_size=1)[0]
    torch.testing.assert_close(with_means.residual_means[2], alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(with_means.residual_means[1], alone, rtol=1e-2, atol=1e-2)
    # The statistics do not depend on the flag, to the bit.
    without = record(loaded, records, config, progress=False)
    assert without.residual_means is None
    assert replace(with_means, residual_means=None).digest() == without.digest()
    assert with_means.digest() != without.digest()


def test_sharded_residual_means_keep_record_order(make_tiny: MakeTiny,
                                                  records: list[Record]) -> None:
    """Three shards batch the dialogues differently (padding to other lengths): equal up to
    float32 rounding of the padded forward."""
    loaded = make_tiny("llama")
    config = RecordConfig(batch_size=2, residual=True)
    sharded = record_sharded(LocalExecutor(), loaded, records, 3, config=config,
                             progress=False)
    whole = record(loaded, records, config, progress=False)
    assert sharded.residual_means is not None and whole.residual_means is not None
    torch.testing.assert_close(sharded.residual_means, whole.residual_means, rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(UserError, match="residual means"):
        whole.merge(record(loaded, records[:2], replace(config, residual=False),
                           progress=False))


def test_residual_means_survive_save_and_load(make_tiny: MakeTiny, records: list[Record],
                                              tmp_path: Path) -> None:
    recording = record(make_tiny("gpt2"), records, RecordConfig(residual=True),
                       progress=False)
    path = tmp_path / "stats.safetensors"
    recording.save(path, {"model": "x"})
    loaded = Recording.load(path, require_digest=True)
    assert loaded.residual_means is not None and recording.residual_means is not None
    assert torch.equal(loaded.residual_means, recording.residual_means)
    assert loaded.digest() == recording.digest()
    assert json.loads(path.with_suffix(".json").read_text())["residual_means"] is True


def test_a_dialogue_without_words_has_no_residual_mean(make_tiny: MakeTiny,
                                                       records: list[Record]) -> None:
    silent = Record(id="silent", emotion="fear", turns=(Turn("A", " "),), source="test")
    loaded = make_tiny("llama")
    assert record(loaded, [*records, silent], progress=False).tokens.sum() > 0
    with pytest.raises(UserError, match="'silent' has no words"):
        record(loaded, [*records, silent], RecordConfig(residual=True), progress=False)
