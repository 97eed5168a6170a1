"""Models dispatched by accelerate (``load(..., device_map=...)``): every stage still sees and
changes every layer, exactly as on the model loaded whole.

There is no GPU here, so offloading is the stand-in: a module mapped to ``"disk"`` keeps its
weights on the meta device and runs through accelerate's ``AlignDevicesHook``, which wraps its
``forward`` and loads the weights for each call, the same hook that moves a GPU-split model's
activations between devices. The embedding is offloaded too, so the device inputs go to is not
that of its weight. The last test needs a GPU: it splits the model between cuda:0 and the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.causal.experiments.cards import vocab_projection
from emoneuron.causal.experiments.steer import continue_dialogues, neutral_prompts
from emoneuron.data.schema import Record
from emoneuron.errors import UserError
from emoneuron.models.loading import DeviceMap, LoadedModel, load
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record
from emoneuron.recording.statistics import Recording

DEVICE_MAP = {"model.embed_tokens": "disk", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
              "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "disk"}
ABLATION = Ablation.of({0: range(0, 80, 3), 1: range(1, 80, 2)}, tokens="dialogue")


@pytest.fixture(scope="module")
def whole(tiny_model_dir: Path) -> LoadedModel:
    return load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def dispatched(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load(str(tiny_model_dir), device_map=DEVICE_MAP,
                offload_folder=tmp_path_factory.mktemp("offload"))


def _site_modules(loaded: LoadedModel) -> list[torch.nn.Module]:
    return loaded.adapter.site_modules(loaded.model)


def test_the_map_is_respected_and_the_model_not_moved(
        tiny_model_dir: Path, tmp_path: Path, dispatched: LoadedModel) -> None:
    assert dispatched.model.hf_device_map == DEVICE_MAP
    bottom, top = _site_modules(dispatched)
    assert bottom.weight.device == torch.device("cpu")
    assert top.weight.device.type == "meta"  # offloaded: accelerate's hook loads it per call
    assert hasattr(top, "_hf_hook") and top._hf_hook.offload
    assert dispatched.model.get_input_embeddings().weight.device.type == "meta"
    assert dispatched.device == torch.device("cpu")  # the hook's execution device
    # `device` only picks the dtype under a device_map: a `.to("meta")` would have moved the
    # CPU-mapped layer too.
    on_meta = load(str(tiny_model_dir), device="meta", dtype=torch.float32,
                   device_map=DEVICE_MAP, offload_folder=tmp_path)
    assert _site_modules(on_meta)[0].weight.device == torch.device("cpu")


def test_recording_sees_every_layer(whole: LoadedModel, dispatched: LoadedModel,
                                    records: list[Record]) -> None:
    expected = record(whole, records, RecordConfig(batch_size=3), progress=False)
    got = record(dispatched, records, RecordConfig(batch_size=3), progress=False)
    assert (expected.sum_sq.sum(dim=(0, 1, 3)) > 0).all()  # every layer has statistics
    for name in ("tokens", "active", "sum", "sum_sq", "top_values"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), msg=name)
    assert torch.equal(got.histogram, expected.histogram)
    assert torch.equal(got.top_dialogue, expected.top_dialogue)
    assert isinstance(got, Recording) and got.n_layers == 2


def test_ablation_changes_scores_as_on_the_whole_model(
        whole: LoadedModel, dispatched: LoadedModel, records: list[Record]) -> None:
    scores = {}
    for name, loaded in (("whole", whole), ("dispatched", dispatched)):
        classifier = Classifier(loaded, [], batch_size=3)
        untouched = classifier.predict(records)
        with applied(loaded, ABLATION) as scope:
            ablated = classifier.predict(records, scope=scope)
        assert not np.allclose(ablated, untouched, atol=1e-4)
        assert not any(module._forward_pre_hooks for module in _site_modules(loaded))
        scores[name] = untouched, ablated
    np.testing.assert_allclose(scores["dispatched"][0], scores["whole"][0], atol=1e-5)
    np.testing.assert_allclose(scores["dispatched"][1], scores["whole"][1], atol=1e-5)


def test_reusing_lower_layers_keeps_accelerates_hooks(
        whole: LoadedModel, dispatched: LoadedModel, records: list[Record]) -> None:
    top_only = Ablation.of({1: range(0, 80, 2)})
    bottom_layer = dispatched.adapter.layers(dispatched.model)[0]
    accelerate_forward = vars(bottom_layer)["forward"]  # the hook's wrapper
    expected = Classifier(whole, [], batch_size=3)
    classifier = Classifier(dispatched, [], batch_size=3)
    with applied(whole, top_only):
        full = expected.predict(records)
    with applied(dispatched, top_only):
        classifier.predict(records, unchanged_below=1)  # keeps the layer inputs
        reused = classifier.predict(records, unchanged_below=1)  # skips layer 0
    np.testing.assert_allclose(reused, full, atol=1e-5)
    assert vars(bottom_layer)["forward"] is accelerate_forward
    np.testing.assert_allclose(classifier.predict(records), expected.predict(records), atol=1e-5)


def test_cards_and_steering_read_offloaded_weights(whole: LoadedModel,
                                                   dispatched: LoadedModel) -> None:
    for index in (0, 7):
        assert vocab_projection(dispatched, 1, index) == vocab_projection(whole, 1, index)
    assert _site_modules(dispatched)[1].weight.device.type == "meta"  # offloaded again
    amplified = Ablation.of({0: range(0, 80, 4), 1: range(2, 80, 4)}, "amplify", 4.0)
    prompts = neutral_prompts()[:3]
    assert (continue_dialogues(dispatched, prompts, amplified)
            == continue_dialogues(whole, prompts, amplified))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_layers_on_two_real_devices(tiny_model_dir: Path, whole: LoadedModel,
                                    records: list[Record]) -> None:
    """Layer 0 on cuda:0 and layer 1 on the CPU, each computing where it sits (accelerate's
    main_device="cpu" keeps "cpu" modules executing there), so every hook meets activations
    on two devices."""
    from accelerate import dispatch_model

    split = load(str(tiny_model_dir))
    dispatch_model(split.model, main_device="cpu", device_map={
        "model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
        "model.layers.1": "cpu", "model.norm": 0, "lm_head": "cpu"})
    assert split.device == torch.device("cuda", 0)
    got = record(split, records, RecordConfig(batch_size=3), progress=False)
    expected = record(whole, records, RecordConfig(batch_size=3), progress=False)
    torch.testing.assert_close(got.sum, expected.sum, atol=1e-3, rtol=1e-3)
    # The GPU adds rows in a fixed order too (no atomic adds): a second pass is bit-identical.
    again = record(split, records, RecordConfig(batch_size=3), progress=False)
    for name in ("active", "sum", "sum_sq", "histogram", "top_values", "top_dialogue"):
        assert torch.equal(getattr(again, name), getattr(got, name)), name
    assert torch.equal(got.histogram.sum(-1), expected.histogram.sum(-1))
    classifier, reference = Classifier(split, [], batch_size=3), Classifier(whole, [], batch_size=3)
    with applied(split, ABLATION) as scope:
        ablated = classifier.predict(records, scope=scope)
    with applied(whole, ABLATION) as scope:
        np.testing.assert_allclose(ablated, reference.predict(records, scope=scope), atol=1e-3)
    promoted, _ = vocab_projection(split, 0, 3)  # layer 0 and the norm on cuda:0, lm_head on CPU
    expected_promoted, _ = vocab_projection(whole, 0, 3)
    assert [e.logit for e in promoted] == pytest.approx([e.logit for e in expected_promoted],
                                                        abs=1e-3)


@pytest.mark.parametrize("device_map", ["nonsense", {"": "gpu7"}])
def test_a_device_map_that_does_not_load_is_a_user_error(tiny_model_dir: Path,
                                                         device_map: DeviceMap) -> None:
    with pytest.raises(UserError, match=r"does not load with device_map .*check the device map"):
        load(str(tiny_model_dir), device_map=device_map)
