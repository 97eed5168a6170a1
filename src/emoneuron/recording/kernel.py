"""The recorder's per-token statistics as one compiled C pass (``kernel.c``), with the torch
operators as the fallback: both give bit-identical results, the C pass in about a third of the
time on a CPU, which is what keeps the hooks' cost within a few percent of the forward pass.

1. :func:`statistics_kernel` resolves :attr:`RecordConfig.kernel
   <emoneuron.recording.config.RecordConfig.kernel>`: ``torch`` never compiles, ``c`` must,
   ``auto`` compiles when it can and otherwise says so in one line and goes on with torch.
2. The first request in a process builds the library with the system's C compiler (``$CC``,
   else ``cc``; of the GCC or Clang family, whose flags it is given) in a temporary folder,
   about 0.1 s; nothing is cached on disk, so ``-march=native`` always matches the machine
   that runs it. Flags a compiler lacks (``-fopenmp`` on Apple's clang, ``-march=native``)
   are dropped one by one. A compiler still running after BUILD_SECONDS is killed with its
   children, and one that exits 0 without building a library counts as none: either way
   ``auto`` goes on with torch.
3. :meth:`CompiledKernel.accepts` takes float32 activations on a CPU; anything else (bfloat16,
   a GPU) goes through the torch operators.
4. The pass runs on the process's OpenMP threads. With the pip wheels of torch on Linux that is
   torch's own ``libgomp.so.1``, which the library binds to; a torch built against another
   runtime (e.g. conda's llvm-openmp) would give it a second set of threads competing for the
   cores: use ``--kernel torch`` there, or build with ``CC`` pointing at a matching compiler.

>>> kernel = statistics_kernel("auto")  # doctest: +SKIP
>>> kernel.command  # doctest: +SKIP
('cc', '-O3', '-ffp-contract=off', '-fPIC', '-shared', '-march=native', '-fopenmp')
"""

from __future__ import annotations

import ctypes
import functools
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from emoneuron.errors import UserError
from emoneuron.recording.config import Kernel

SOURCE = Path(__file__).with_name("kernel.c")
# -ffp-contract=off: no fused multiply-add, so squares round as torch rounds them.
REQUIRED_FLAGS = ("-O3", "-ffp-contract=off", "-fPIC", "-shared")
OPTIONAL_FLAGS = ("-march=native", "-fopenmp")
# A build takes about 0.1 s; a compiler still running after this hangs, and recording waits.
BUILD_SECONDS = 30
_POINTER, _SIZE = ctypes.c_void_p, ctypes.c_int64


class _Layer(ctypes.Structure):
    """``Layer`` of kernel.c: what one layer's update reads and writes."""

    _fields_ = [("activation", _POINTER), ("width", _SIZE), ("positions", _POINTER),
                ("sequence", _POINTER), ("n_counted", _SIZE), ("cell", _POINTER),
                ("dialogue", _POINTER), ("n_sequences", _SIZE), ("scratch", _POINTER),
                ("histogram", _POINTER), ("active", _POINTER), ("sum", _POINTER),
                ("sum_sq", _POINTER), ("cell_stride", _SIZE), ("top_values", _POINTER),
                ("top_dialogue", _POINTER), ("top_k", _SIZE)]


_DTYPES = {"activation": torch.float32, "positions": torch.int64, "sequence": torch.int64,
           "cell": torch.int64, "dialogue": torch.int64, "scratch": torch.float32,
           "histogram": torch.int32, "active": torch.float64, "sum": torch.float64,
           "sum_sq": torch.float64, "top_values": torch.float32, "top_dialogue": torch.int64}


@dataclass(frozen=True)
class CompiledKernel:
    """The loaded library and the command that built it."""

    library: ctypes.CDLL
    command: tuple[str, ...]

    @staticmethod
    def accepts(activation: torch.Tensor) -> bool:
        return (activation.device.type == "cpu" and activation.dtype == torch.float32
                and activation.is_contiguous())

    def update_layer(self, **tensors: torch.Tensor) -> None:
        """One layer's update, as the torch operators of the recorder make it: ``activation``
        (rows, W), its counted ``positions`` and their ``sequence``, each sequence's ``cell``
        and ``dialogue`` hash; ``scratch`` (4, B, W) is work space; ``histogram`` (W, 32) of
        the batch's emotion, the moments ``active``, ``sum``, ``sum_sq`` (cells, W; rows
        contiguous and equally spaced), and ``top_values``, ``top_dialogue`` (k, W) are added
        to in place."""
        stride = tensors["active"].stride()
        for name, dtype in _DTYPES.items():
            tensor = tensors[name]
            laid_out = (tensor.stride() == stride if name in ("active", "sum", "sum_sq")
                        else tensor.is_contiguous())
            if tensor.dtype != dtype or not laid_out or stride[1] != 1 or tensor.is_cuda:
                raise ValueError(f"{name}: the kernel needs a contiguous {dtype} CPU tensor "
                                 "(the moments: contiguous rows, equally spaced)")
        top_k, width = tensors["top_values"].shape
        layer = _Layer(width=width, n_counted=len(tensors["positions"]),
                       n_sequences=len(tensors["cell"]), top_k=top_k, cell_stride=stride[0],
                       **{name: tensor.data_ptr() for name, tensor in tensors.items()})
        self.library.update_layer(ctypes.byref(layer))


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or "cc")


def _compiles(command: list[str]) -> bool | None:
    """Whether ``command`` exits 0; None when it cannot start or hangs (fewer flags would not
    help). It runs in a process group of its own, killed whole at BUILD_SECONDS: killing a
    wrapper alone (ccache, a script) would leave its compiler running."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None
    try:
        return process.wait(timeout=BUILD_SECONDS) == 0
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def _build(folder: Path) -> CompiledKernel | None:
    flags = list(OPTIONAL_FLAGS)
    while True:
        target = folder / f"kernel{len(flags)}.so"
        command = (*_compiler(), *REQUIRED_FLAGS, *flags)
        built = _compiles([*command, str(SOURCE), "-o", str(target)])
        if built is None:
            return None
        if built:
            try:
                library = ctypes.CDLL(str(target))
            except OSError:
                return None  # it exited 0 without building a library (not a compiler)
            library.update_layer.restype = None
            library.update_layer.argtypes = [ctypes.POINTER(_Layer)]
            return CompiledKernel(library, command)
        if not flags:
            return None
        flags.pop(0)


@functools.cache
def compiled_kernel() -> CompiledKernel | None:
    """The kernel built for this machine, or None where no C compiler builds it (once per
    process; the library stays loaded after its folder is gone)."""
    with tempfile.TemporaryDirectory(prefix="emoneuron-kernel-") as folder:
        return _build(Path(folder))


@functools.cache
def _say_fallback() -> None:
    print(f"note: no C compiler ({shlex.join(_compiler())}) built the recording kernel; "
          "recording with torch operators instead (same results, slower); install one (e.g. "
          "apt install gcc) or set --kernel torch to skip the attempt", file=sys.stderr,
          flush=True)


def statistics_kernel(choice: Kernel) -> CompiledKernel | None:
    """The compiled kernel ``choice`` asks for, or None for the torch operators."""
    if choice == "torch":
        return None
    kernel = compiled_kernel()
    if kernel is None and choice == "c":
        raise UserError(f"--kernel c: no C compiler ({shlex.join(_compiler())}) builds "
                        f"{SOURCE.name}; install one (e.g. apt install gcc) or use --kernel auto")
    if kernel is None:
        _say_fallback()
    return kernel
