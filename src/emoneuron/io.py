"""Atomic writes, output paths checked before any work, content hashes shared by every stage,
and the JSON and TOML readers."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain, count
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from emoneuron.errors import UserError

if TYPE_CHECKING:
    import pandas as pd


def check_output_file(path: str | Path, flag: str = "--out") -> None:
    """A UserError naming ``path`` unless a file can be written there: it is no directory and
    its folder exists or can be created, and is writable. Commands call it before their work, so
    a bad path costs nothing computed.

    >>> check_output_file("/")
    Traceback (most recent call last):
    ...
    emoneuron.errors.UserError: --out /: is a directory; give a file name, e.g. /out.json
    """
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {target}: is a directory; give a file name, "
                        f"e.g. {target / 'out.json'}")
    _check_creatable(target.parent, flag, target)


def check_output_dir(path: str | Path, flag: str = "--out") -> None:
    """A UserError naming ``path`` unless it is, or can be created as, a writable directory.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as handle:
    ...     check_output_dir(handle.name)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emoneuron.errors.UserError: --out ...: is a file, not a directory; give a directory ...
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{flag} {target}: is a file, not a directory; give a directory that "
                        "does not exist yet or one to write into")
    _check_creatable(target, flag, target)


def check_new_or_own(path: str | Path, marker: str, holds: str, command: str,
                     flag: str = "--out", kept: Callable[[str], bool] = lambda _: False) -> None:
    """Refuse an output directory ``command`` must not write into: one that is not empty and
    holds none of its output (no ``marker`` file), so a mistyped ``flag`` never overwrites the
    user's same-named files. A directory holding ``marker`` is the command's own, rewritten;
    entries ``kept`` accepts (what a stopped command leaves) do not count.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (Path(folder) / "compare.html").write_text("mine")
    ...     check_new_or_own(folder, "compare.json", "comparison", "compare")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emoneuron.errors.UserError: --out ...: not empty (compare.html) and holds no comparison (no \
compare.json); give a new or empty directory, e.g. .../compare
    """
    target = Path(path)
    if not target.is_dir() or (target / marker).exists():
        return
    foreign = sorted(entry.name for entry in target.iterdir() if not kept(entry.name))
    if foreign:
        new = next(target / name for name in chain([command], (f"{command}-{k}" for k in count(2)))
                   if not (target / name).exists())
        raise UserError(f"{flag} {target}: not empty ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}) and holds no {holds} (no "
                        f"{marker}); give a new or empty directory, e.g. {new}")


def _check_creatable(directory: Path, flag: str, target: Path) -> None:
    """``directory`` exists and is writable, or its nearest existing ancestor is a writable
    directory (so ``mkdir(parents=True)`` succeeds)."""
    existing = next(p for p in (directory, *directory.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag} {target}: {existing} is a file, so no directory can be made "
                        "under it; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == target else f"{existing} "
        raise UserError(f"{flag} {target}: {where}is not writable; choose a directory you can "
                        "write to")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """``frame`` as a CSV table a person opens (no index, 6 significant digits), atomically."""
    with atomic_open(path) as handle:
        frame.to_csv(handle, index=False, float_format="%.6g")


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Raise an OSError of the block that names no file (a write's or fsync's, such as a full
    disk's) as one naming ``path``, the file being written, so its one line says which."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    A crash or exception leaves any previous ``path`` untouched: readers see either the old
    file or the complete new one, never a partial write.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with naming(target), os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")


def rewrite(path: str | Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds it; whether it wrote, so a
    generator names only the files it changed (and leaves the others' times alone)."""
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_open(path) as handle:
        handle.write(text)
    return True


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's tables, or a UserError naming the file and the problem."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """What a stage's files, a condition store or a continuation were computed from, as one
    hash: ``value`` as JSON with sorted keys (anything JSON lacks as its ``str``).

    >>> content_hash(["v1", {"b": 1, "a": (2, 3)}]) == content_hash(["v1", {"a": [2, 3], "b": 1}])
    True
    """
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
