"""Recordings are cached under (weights, data, site, token policy, settings, residual means,
code) and reused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from emoneuron.data.schema import Record
from emoneuron.models.adapters import PRE_ACTIVATION_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.cache import cached_record, recording_key
from emoneuron.recording.config import RecordConfig

MakeTiny = Callable[[str], LoadedModel]


def test_second_call_reads_the_cache_and_runs_no_model(
        make_tiny: MakeTiny, records: list[Record], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    loaded = make_tiny("gpt2")
    forwards: list[int] = []
    handle = loaded.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    body = loaded.model.base_model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        first = cached_record(loaded, records, RecordConfig(batch_size=4), progress=False)
        ran = len(forwards)
        second = cached_record(loaded, records, RecordConfig(batch_size=4), progress=False)
        assert ran > 0 and len(forwards) == ran  # the second call ran nothing
        for name in ("tokens", "active", "sum", "sum_sq", "histogram", "top_values"):
            assert torch.equal(getattr(first, name), getattr(second, name))
        assert len(list((tmp_path / "cache" / "stats").glob("*.safetensors"))) == 1
        # Anything in the key changes the entry: another site, other data, other weights.
        cached_record(loaded, records, RecordConfig(site=PRE_ACTIVATION_SITE), progress=False)
        cached_record(loaded, records[:4], progress=False)
        assert len(forwards) > ran
        assert len(list((tmp_path / "cache" / "stats").glob("*.safetensors"))) == 3
        with torch.no_grad():
            parameter = next(loaded.model.parameters())
            monkeypatch.setattr(parameter, "data", parameter.data + 1e-3)
        before = len(forwards)
        cached_record(loaded, records, progress=False)
        assert len(forwards) > before
    finally:
        handle.remove()
        body.remove()


def _changed_inside(path: Path) -> None:
    """2,000 bytes of the tensors changed, the safetensors header intact."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    middle = (start + len(data)) // 2
    data[middle:middle + 2000] = bytes(255 - b for b in data[middle:middle + 2000])
    path.write_bytes(bytes(data))


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_changed_inside, _cut])
def test_a_damaged_entry_is_recorded_again_with_one_warning(
        damage: Callable[[Path], None], make_tiny: MakeTiny, records: list[Record],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    loaded = make_tiny("llama")
    forwards: list[int] = []
    handle = loaded.model.base_model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        clean = cached_record(loaded, records, progress=False)
        (entry,) = (tmp_path / "cache" / "stats").glob("*.safetensors")
        damage(entry)
        capsys.readouterr()
        ran = len(forwards)
        again = cached_record(loaded, records, progress=False)
        assert len(forwards) > ran  # recorded again, not read
        assert again.digest() == clean.digest()
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"warning: {entry}: damaged cache entry (")
        assert lines[0].endswith("); recording again")
        # The entry was replaced: the next call reads it, silently.
        ran = len(forwards)
        assert cached_record(loaded, records, progress=False).digest() == clean.digest()
        assert len(forwards) == ran and capsys.readouterr().err == ""
    finally:
        handle.remove()


def test_residual_means_are_in_the_key(make_tiny: MakeTiny, records: list[Record],
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry recorded without residual means never answers a request for them."""
    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    loaded = make_tiny("llama")
    assert (recording_key(loaded, records, RecordConfig())
            != recording_key(loaded, records, RecordConfig(residual=True)))
    forwards: list[int] = []
    handle = loaded.model.base_model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        plain = cached_record(loaded, records, progress=False)
        ran = len(forwards)
        asked = cached_record(loaded, records, RecordConfig(residual=True), progress=False)
        assert len(forwards) > ran and plain.residual_means is None
        assert asked.residual_means is not None
        ran = len(forwards)
        again = cached_record(loaded, records, RecordConfig(residual=True), progress=False)
        assert len(forwards) == ran and again.residual_means is not None
        assert torch.equal(again.residual_means, asked.residual_means)
        assert len(list((tmp_path / "cache" / "stats").glob("*.safetensors"))) == 2
    finally:
        handle.remove()
