"""The compiled recording kernel: bit-identical to plain torch on awkward values, built with
the flags a compiler accepts, and a clear fallback where none builds it."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import pytest
import torch

from emoneuron.errors import UserError
from emoneuron.recording import kernel
from emoneuron.recording.statistics import N_BINS, best_indices, octave_bins


@pytest.fixture
def compiled() -> kernel.CompiledKernel:
    built = kernel.compiled_kernel()
    if built is None:
        pytest.skip("no C compiler on this machine")
    return built


def _awkward_values(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Values of every octave and sign, and the ones a bit trick gets wrong: zeros of both
    signs, infinities, NaN, float16 subnormals, and values that round up onto a bin edge."""
    values = (torch.randn(shape, generator=generator)
              * 2.0 ** torch.randint(-16, 8, shape, generator=generator))
    edge = 2.0 ** torch.arange(-10, 5, dtype=torch.float64)
    specials = torch.cat([
        torch.tensor([0.0, -0.0, torch.inf, -torch.inf, torch.nan, 2.0 ** -20, -(2.0 ** -14),
                      65504.0, 65520.0, 1e30, -1e30]),
        edge.float(), -edge.float(),
        (edge * (1 - 2.0 ** -12)).float(), -(edge * (1 - 2.0 ** -12)).float(),  # round up
        (edge * (1 - 2.0 ** -10)).float(), -(edge * (1 - 2.0 ** -10)).float()])  # stay below
    flat = values.view(-1)
    chosen = torch.randperm(flat.numel(), generator=generator)[:4 * len(specials)]
    flat[chosen] = specials.repeat(4)
    return values


def _expected(batches: list[dict[str, torch.Tensor]], cells: int, width: int,
              top_k: int) -> dict[str, torch.Tensor]:
    """The statistics the obvious way: per-sequence float32 sums one token after another, then
    float64 cells; every bin from octave_bins; the top-k of all sequences' maxima at once."""
    out = {name: torch.zeros(cells, width, dtype=torch.float64)
           for name in ("active", "sum", "sum_sq")}
    out["histogram"] = torch.zeros(width, N_BINS, dtype=torch.int32)
    maxima, hashes = [], []
    for batch in batches:
        sequences = len(batch["cell"])
        rows = torch.zeros(3, sequences, width)
        strongest = torch.full((sequences, width), -torch.inf)
        for position, sequence in zip(batch["positions"].tolist(), batch["sequence"].tolist(),
                                      strict=True):
            value = batch["activation"][position]
            rows[0, sequence] += (value > 0).float()
            rows[1, sequence] += value
            rows[2, sequence] += value * value
            # A NaN is kept as it came (torch.maximum would write one of its own).
            keep = (value > strongest[sequence]) | value.isnan()
            strongest[sequence] = torch.where(keep, value, strongest[sequence])
            out["histogram"][torch.arange(width), octave_bins(value)] += 1
        for sequence, cell in enumerate(batch["cell"].tolist()):
            for index, name in enumerate(("active", "sum", "sum_sq")):
                out[name][cell] += rows[index, sequence].double()
        maxima.append(strongest)
        hashes.append(batch["dialogue"])
    values = torch.cat([torch.full((top_k, width), -torch.inf), *maxima])
    dialogues = torch.cat([torch.zeros(top_k, width, dtype=torch.int64),
                           *(h[:, None].expand(-1, width) for h in hashes)])
    order = best_indices(values, dialogues, top_k, dim=0)
    out["top_values"], out["top_dialogue"] = values.gather(0, order), dialogues.gather(0, order)
    return out


@pytest.mark.parametrize(("width", "top_k"), [(600, 3), (256, 8), (37, 1)])
def test_kernel_is_bit_identical_to_plain_torch(compiled: kernel.CompiledKernel, width: int,
                                                top_k: int) -> None:
    generator = torch.Generator().manual_seed(width)
    cells = 5
    state = {name: torch.zeros(cells, width, dtype=torch.float64)
             for name in ("active", "sum", "sum_sq")}
    state["histogram"] = torch.zeros(width, N_BINS, dtype=torch.int32)
    state["top_values"] = torch.full((top_k, width), -torch.inf)
    state["top_dialogue"] = torch.zeros(top_k, width, dtype=torch.int64)
    batches = []
    for sequences, length in ((4, 9), (2, 30), (6, 3)):
        activation = _awkward_values((sequences * length, width), generator)
        counted = torch.rand(sequences, length, generator=generator) < 0.7
        counted[-1] = False  # a sequence with nothing counted adds only zeros and -inf
        sequence, position = counted.nonzero(as_tuple=True)
        batch = {"activation": activation, "positions": sequence * length + position,
                 "sequence": sequence,
                 "cell": torch.randint(0, cells, (sequences,), generator=generator),
                 "dialogue": torch.randint(-2 ** 62, 2 ** 62, (sequences,),
                                           generator=generator)}
        batches.append(batch)
        compiled.update_layer(**batch, scratch=torch.empty(4 * sequences, width), **state)
    expected = _expected(batches, cells, width, top_k)
    for name, tensor in expected.items():
        missing = tensor.isnan()  # NaN != NaN: compare where they are, and every other value
        assert torch.equal(state[name].isnan(), missing), name
        assert torch.equal(state[name][~missing], tensor[~missing]), name
    # Not vacuous: NaN and infinities reached the sums, every bin was used, the lists filled.
    assert state["sum"].isnan().any() and (state["histogram"].sum(dim=0) > 0).all()
    assert not (state["top_values"] == -torch.inf).any()


def test_kernel_refuses_a_tensor_it_cannot_read(compiled: kernel.CompiledKernel) -> None:
    tensors = {"activation": torch.zeros(4, 8, dtype=torch.bfloat16),
               "positions": torch.arange(4), "sequence": torch.zeros(4, dtype=torch.int64),
               "cell": torch.zeros(1, dtype=torch.int64),
               "dialogue": torch.zeros(1, dtype=torch.int64), "scratch": torch.empty(4, 8),
               "histogram": torch.zeros(8, N_BINS, dtype=torch.int32),
               **{name: torch.zeros(1, 8, dtype=torch.float64)
                  for name in ("active", "sum", "sum_sq")},
               "top_values": torch.zeros(2, 8), "top_dialogue": torch.zeros(2, 8,
                                                                            dtype=torch.int64)}
    assert not compiled.accepts(tensors["activation"])
    with pytest.raises(ValueError, match="activation"):
        compiled.update_layer(**tensors)


def _script(tmp_path: Path, body: str) -> str:
    """An executable shell script running ``body``, to stand for the compiler as ``$CC``."""
    script = tmp_path / "fake-cc"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _fake_compiler(tmp_path: Path, refuses: str) -> str:
    """A compiler script that fails when given ``refuses`` and otherwise calls cc."""
    return _script(tmp_path, f"case \"$*\" in *{refuses}*) exit 1;; esac\nexec cc \"$@\"")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as the compiler")
def test_flags_a_compiler_lacks_are_dropped(compiled: kernel.CompiledKernel, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", _fake_compiler(tmp_path, "-march=native"))
    kernel.compiled_kernel.cache_clear()
    try:
        built = kernel.compiled_kernel()
        assert built is not None
        assert "-march=native" not in built.command and "-fopenmp" in built.command
    finally:
        monkeypatch.undo()
        kernel.compiled_kernel.cache_clear()


def test_without_a_compiler_auto_falls_back_and_c_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    kernel.compiled_kernel.cache_clear()
    try:
        assert kernel.statistics_kernel("torch") is None
        assert kernel.statistics_kernel("auto") is None
        assert "no C compiler (/nonexistent/cc)" in capsys.readouterr().err
        with pytest.raises(UserError, match=r"--kernel c: no C compiler .* --kernel auto"):
            kernel.statistics_kernel("c")
    finally:
        monkeypatch.undo()
        kernel.compiled_kernel.cache_clear()


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as the compiler")
def test_a_compiler_that_builds_nothing_or_hangs_is_no_compiler(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 without a library (once a ctypes OSError), and a hang whose child the build's
    time limit must stop too (once 120 s of silence, the child left running)."""
    child = tmp_path / "child.pid"
    monkeypatch.setattr(kernel, "BUILD_SECONDS", 1)
    for body in ("exit 0", f"sleep 300 &\necho $! > {child}\nwait"):
        monkeypatch.setenv("CC", _script(tmp_path, body))
        kernel.compiled_kernel.cache_clear()
        kernel._say_fallback.cache_clear()
        try:
            assert kernel.statistics_kernel("auto") is None
            assert "built the recording kernel; recording with torch" in capsys.readouterr().err
        finally:
            kernel.compiled_kernel.cache_clear()
    status = Path(f"/proc/{child.read_text().strip()}/status")
    assert not status.exists() or "zombie" in status.read_text(), "the compiler's child runs on"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_the_kernel_shares_torchs_openmp_runtime(compiled: kernel.CompiledKernel) -> None:
    """A second OpenMP runtime would start its own threads beside torch's and both would
    compete for the cores; the kernel's library must bind to the one torch loaded."""
    if "-fopenmp" not in compiled.command:
        pytest.skip("built without OpenMP")
    runtimes = set(re.findall(r"\S*lib[gi]?omp[^/\s]*\.so[.\d]*", Path("/proc/self/maps")
                              .read_text()))
    assert len(runtimes) == 1, runtimes
