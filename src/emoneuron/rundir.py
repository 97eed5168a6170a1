"""A run directory: its files (named in :mod:`emoneuron.layout`), with readers that verify.

``manifest.json`` lists each input file of the finished run with its sha256 (``files``); a
reader refuses a file that is missing, unlisted or changed since, naming it and the fix, so a
report never mixes two runs or reads a cut table. What a report writes (``report.html``,
``figures/``) is output, not listed. A run directory is owned by one ``run`` at a time
(:meth:`RunDir.locked`).

>>> from emoneuron.layout import EFFECTS
>>> run = RunDir("runs/smollm2")
>>> run.file(EFFECTS).name
'effects.csv'
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoneuron.errors import UserError
from emoneuron.io import check_new_or_own, read_json, sha256_bytes, sha256_file, write_json
from emoneuron.layout import LOCK, MANIFEST, METHODS, NEURONS, OUTPUTS, STAGES, STATS, data_file

if TYPE_CHECKING:
    import pandas as pd

    from emoneuron.data.schema import Record
    from emoneuron.recording.statistics import Recording
    from emoneuron.selection.neurons import NeuronSets

# What the readers of a run (report, compare, ablate, neuron, series) take from its manifest:
# each section with the keys it must hold (sections with keys are JSON objects).
MANIFEST_KEYS: dict[str, tuple[str, ...]] = {
    "emoneuron_version": (), "created": (), "versions": (), "timings": (),
    "config": ("model",), "model": ("name", "n_layers", "width", "n_neurons", "site"),
    "data": ("hash", "counts"), "evaluation": ("description", "n_shot", "chance"),
}
MANIFEST_OBJECTS = ("config", "model", "data", "evaluation", "versions", "timings")


def check_not_a_run_file(path: str | Path, flag: str = "--out") -> None:
    """Refuse an output ``path`` that a run directory above it lists in its manifest: only
    ``run`` (and ``ablate``, for methods/) writes a run's files."""
    target = Path(path).absolute()
    for folder in target.parents:
        try:
            listed = read_json(folder / MANIFEST).get("files") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if target.relative_to(folder).as_posix() in listed:
            raise UserError(f"{flag} {path}: a file of the run in {folder} (its {MANIFEST} "
                            f"lists it), which only `emoneuron run` writes; choose another "
                            f"name, e.g. {Path(path).with_name('alt' + Path(path).suffix)}")


def _unlisted(name: str) -> bool:
    """Not in the manifest's list: the manifest itself, outputs and temporary files."""
    first = name.split("/", 1)[0]
    return first in (MANIFEST, *OUTPUTS) or Path(name).name.startswith(".")


def _left_by_a_run(name: str) -> bool:
    """The lock, its staged copy, or an atomic write's temporary file (io.atomic_open)."""
    return name == LOCK or name.startswith(f".{LOCK}.") or (
        name.startswith(".") and name.endswith(".tmp"))


class RunDir:
    """The files of one run directory. Reads verify each file against the manifest's list
    unless ``verify`` is False (the run writing the directory reads its own files)."""

    def __init__(self, path: str | Path, verify: bool = True) -> None:
        self.path = Path(path)
        self.verify = verify
        self._manifest: dict[str, Any] | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    # -- reading -------------------------------------------------------------------------------

    def refused(self, name: str, reason: str) -> UserError:
        return UserError(f"{self.file(name)}: {reason}; not a finished `emoneuron run` "
                         "directory, or a damaged one: rerun the `emoneuron run` command that "
                         "wrote it (it resumes)")

    def manifest(self) -> dict[str, Any]:
        """The run's manifest, every section its readers take checked to be there."""
        if self._manifest is None:
            if not self.path.is_dir():
                raise UserError(f"{self.path}: not a directory; give a run directory written "
                                "by `emoneuron run --out DIR`")
            if not self.exists(MANIFEST):
                raise UserError(f"{self.file(MANIFEST)}: missing, so {self.path} holds no run; "
                                "give the directory an `emoneuron run --out DIR` wrote (a run "
                                "stopped before it wrote its manifest resumes when that command "
                                "is rerun)")
            payload, problem = self._read_manifest()
            if problem:
                raise self.refused(MANIFEST, problem)
            self._manifest = payload
        return self._manifest

    def manifest_problem(self) -> str | None:
        """Why the manifest cannot be read or lacks what readers take from it; None when it is
        fine (or missing, which :meth:`manifest` refuses on its own)."""
        return self._read_manifest()[1] if self.exists(MANIFEST) else None

    def written_by(self) -> str | None:
        """The emoneuron version the manifest names, where it can be read at all."""
        version = self._read_manifest()[0].get("emoneuron_version")
        return None if version is None else str(version)

    def _read_manifest(self) -> tuple[dict[str, Any], str | None]:
        try:
            payload = read_json(self.file(MANIFEST))
        except (OSError, ValueError) as error:
            return {}, f"unreadable ({error})"
        if not isinstance(payload, dict):
            return {}, "unreadable (not a JSON object)"
        for section, keys in MANIFEST_KEYS.items():
            if section not in payload:
                return payload, f"incomplete (no {section!r})"
            value = payload[section]
            if section in MANIFEST_OBJECTS and not isinstance(value, dict):
                return payload, f"incomplete ({section!r} is not a JSON object)"
            missing = [key for key in keys if key not in value]
            if missing:
                return payload, f"incomplete (no {section}.{missing[0]})"
        return payload, None

    def listed(self) -> dict[str, str] | None:
        """The manifest's file -> sha256 list; None for a run written before there was one."""
        files = self.manifest().get("files")
        return files if isinstance(files, dict) else None

    def exists(self, name: str) -> bool:
        return self.file(name).exists()

    def check(self, name: str, digest: str | None = None) -> None:
        """Refuse ``name`` unless the manifest lists it with this content (``digest``, or the
        file's own hash)."""
        listed = self.listed() if self.verify else None
        if listed is None:
            return
        if name not in listed:
            raise self.refused(name, "not among the files manifest.json lists (the run that "
                                     "wrote it did not finish, or it was added later)")
        if (digest or sha256_file(self.file(name))) != listed[name]:
            raise self.refused(name, "changed since the run wrote it (its sha256 differs from "
                                     "the one manifest.json lists)")

    def check_listed(self) -> None:
        """Refuse the run unless every file manifest.json lists is there, unchanged: what
        speaks for the whole run (its report) must not stand for files changed since."""
        for name in self.listed() or {}:
            if not self.exists(name):
                raise self.refused(name, "missing")
            self.check(name)

    def _bytes(self, name: str, optional: bool) -> bytes | None:
        listed = self.listed() if self.verify else None
        try:
            data = self.file(name).read_bytes()
        except FileNotFoundError:
            if optional and (listed is None or name not in listed):
                return None
            raise self.refused(name, "missing") from None
        except OSError as error:
            raise self.refused(name, f"unreadable ({error})") from None
        self.check(name, sha256_bytes(data))
        return data

    def read_json(self, name: str, optional: bool = False) -> Any:
        data = self._bytes(name, optional)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as error:
            raise self.refused(name, f"unreadable ({error})") from None

    def read_csv(self, name: str, optional: bool = False) -> pd.DataFrame | None:
        import pandas as pd

        data = self._bytes(name, optional)
        if data is None:
            return None
        try:
            return pd.read_csv(io.BytesIO(data))
        except ValueError as error:  # pandas' parse errors are ValueErrors
            raise self.refused(name, f"unreadable ({error})") from None

    def table(self, name: str) -> pd.DataFrame:
        frame = self.read_csv(name)
        assert frame is not None  # not optional
        return frame

    def model_shape(self) -> tuple[int, int]:
        """Layers and neurons per layer of the run's model, from the manifest."""
        try:
            model = self.manifest()["model"]
            return int(model["n_layers"]), int(model["width"])
        except (KeyError, TypeError, ValueError) as error:
            raise self.refused(MANIFEST, f"no model shape ({error!r})") from None

    def check_fits(self, sets: NeuronSets, source: str | Path) -> None:
        """Refuse neurons (from the file ``source``) this run cannot evaluate: declared for
        another model, number of layers or width (their controls would be drawn from the
        wrong shape), or found at a site its intervention cannot act on. Removable are the
        default site, and ``mlp.activation`` with mode zero (which equals zeroing the
        default site's neuron); mode mean also needs the run's recording at the sets' site."""
        from emoneuron.models.config import ACTIVATION_SITE, DEFAULT_SITE, removable
        from emoneuron.options import flat_settings
        from emoneuron.selection.config import UNKNOWN_MODEL

        manifest = self.manifest()
        model, mode = (flat_settings(manifest.get("config", {})).get(key)
                       for key in ("model", "mode"))
        n_layers, width = self.model_shape()
        if (sets.n_layers, sets.width) != (n_layers, width):
            raise UserError(f"{source}: declares {sets.n_layers} layers x {sets.width} neurons, "
                            f"this run's model has {n_layers} x {width}; use neurons identified "
                            f"on this run's model, e.g. `emoneuron identify {self.file(STATS)}`")
        if sets.model not in (model, UNKNOWN_MODEL):
            raise UserError(f"{source}: declares model {sets.model!r}, this run's is {model!r}; "
                            f"use neurons identified on {model!r} (set \"model\" to it only if "
                            "they were)")
        recorded = manifest.get("model", {}).get("site")
        if not removable(sets.site, str(mode)):
            raise UserError(f"{source}: site {sets.site!r} cannot be removed with this run's "
                            f"mode {mode!r}; give neurons found at {DEFAULT_SITE!r} (or at "
                            f"{ACTIVATION_SITE!r} in a run with mode zero)")
        if mode == "mean" and sets.site != recorded:
            raise UserError(f"{source}: site {sets.site!r}, but this run's mean values are "
                            f"recorded at {recorded!r}; give neurons found at {recorded!r}")

    def neurons_json(self, name: str = NEURONS,
                     shape: tuple[int, int] | None = None) -> dict[str, Any]:
        """A neurons.json as read, every neuron checked to lie inside the model: of ``shape``
        (layers, neurons per layer), by default the run's model's."""
        payload = self.read_json(name)
        check_neurons(payload, self.file(name), *(shape or self.model_shape()))
        return dict(payload)

    def neurons(self, name: str = NEURONS, shape: tuple[int, int] | None = None) -> NeuronSets:
        from emoneuron.selection.neurons import NeuronSets

        self.neurons_json(name, shape)
        return NeuronSets.load(self.file(name))

    def recording(self) -> Recording:
        from emoneuron.recording.statistics import Recording

        if not self.exists(STATS):
            raise self.refused(STATS, "missing")
        self.check(STATS)
        return Recording.load(self.file(STATS))

    def records(self, split: str) -> list[Record]:
        from emoneuron.data.schema import read_records

        name = data_file(split)
        if not self.exists(name):
            raise self.refused(name, "missing")
        self.check(name)
        return read_records(self.file(name))

    # -- writing -------------------------------------------------------------------------------

    def files(self) -> list[str]:
        """Every input file now in the directory (not the report's outputs), sorted."""
        return sorted(path.relative_to(self.path).as_posix() for path in self.path.rglob("*")
                      if path.is_file() and not _unlisted(path.relative_to(self.path).as_posix()))

    def hashes(self, names: Iterable[str] | None = None) -> dict[str, str]:
        return {name: sha256_file(self.file(name))
                for name in (self.files() if names is None else names)}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.file(MANIFEST), manifest)
        self._manifest = manifest

    def add_files(self, names: Iterable[str]) -> None:
        """List (or update) ``names`` in the manifest, e.g. after ``ablate`` wrote them."""
        manifest = dict(self.manifest())
        manifest["files"] = {**(self.listed() or {}), **self.hashes(names)}
        self.write_manifest(manifest)

    def under(self, folder: str) -> list[str]:
        return [name for name in self.files() if name.startswith(folder + "/")]

    def check_writable(self, command: str, files: Iterable[str] = (),
                       folders: Iterable[str] = ()) -> None:
        """Refuse, before any work, a run directory ``command`` cannot write into: the
        directory and each of ``folders`` it writes in must be writable folders where they
        exist, and none of ``files`` may be a folder (a file is replaced by a rename, which
        needs only its folder writable)."""
        for name in (".", *folders):
            path = self.file(name)
            if path.exists() and not path.is_dir():
                raise UserError(f"{path}: a file where `emoneuron {command}` writes a folder; "
                                "move it out of the run directory and rerun")
            if path.exists() and not os.access(path, os.W_OK | os.X_OK):
                raise UserError(f"{path}: not writable, and `emoneuron {command}` writes there; "
                                f"make it writable (chmod -R u+w {self.path}) and rerun, or "
                                "give a writable copy of the run (cp -r)")
        for name in files:
            if self.file(name).is_dir():
                raise UserError(f"{self.file(name)}: a folder where `emoneuron {command}` "
                                "writes a file; move it out of the run directory and rerun")

    # -- reusing a stage's files ---------------------------------------------------------------

    def stage_done(self, stage: str, inputs: str) -> bool:
        """Whether ``stage`` ran here on these ``inputs`` (a hash) and its files are unchanged."""
        path = self.file(STAGES)
        try:
            entry = read_json(path).get(stage) if path.exists() else None
        except (OSError, ValueError, AttributeError):
            return False
        if not isinstance(entry, dict) or entry.get("inputs") != inputs:
            return False
        files = entry.get("files", {})
        return bool(files) and all(self.exists(name) and sha256_file(self.file(name)) == digest
                                   for name, digest in files.items())

    def stage_finished(self, stage: str, inputs: str, names: Iterable[str]) -> None:
        """Remember that ``stage`` wrote ``names`` from ``inputs``."""
        path = self.file(STAGES)
        try:
            stages = read_json(path) if path.exists() else {}
        except (OSError, ValueError):
            stages = {}
        stages[stage] = {"inputs": inputs, "files": self.hashes(names)}
        write_json(path, stages)

    # -- ownership -----------------------------------------------------------------------------

    def check_new_or_own(self) -> None:
        """Refuse a directory ``run`` must not write into: one that is not empty and holds no
        run (no manifest.json), so a mistyped --out never overwrites or lists the user's files.
        A run stopped before its manifest leaves only its lock and temporary files."""
        check_new_or_own(self.path, MANIFEST, "run", "run", kept=_left_by_a_run)

    @contextmanager
    def locked(self, command: str = "run") -> Iterator[None]:
        """Own the directory for the block: a lock file with pid, host and start time. Another
        live owner is refused; a dead one's lock (same host) is taken over; a folder in its
        place, which no run made, is refused and kept. A directory this created is removed
        again if nothing was written into it."""
        self.check_writable(command, [LOCK])
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"{self.path}: not a directory; choose another --out") from None
        try:
            self._take_lock()
            try:
                yield
            finally:
                self.file(LOCK).unlink(missing_ok=True)
        finally:
            if created and not any(self.path.iterdir()):
                self.path.rmdir()

    def _take_lock(self) -> None:
        lock = self.file(LOCK)
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        staged = self.file(f".{LOCK}.{os.getpid()}")
        staged.write_text(json.dumps(owner) + "\n", encoding="utf-8")
        try:
            for _ in range(2):
                try:
                    os.link(staged, lock)  # fails when a lock exists: no two owners
                    return
                except FileExistsError:
                    self._clear_stale(lock)
            raise UserError(f"{self.path}: another `emoneuron run` took it over just now; "
                            "use another --out")
        finally:
            staged.unlink(missing_ok=True)

    def _clear_stale(self, lock: Path) -> None:
        """Remove ``lock`` if its owner is dead (on this host) or it is unreadable; else refuse."""
        try:
            owner = json.loads(lock.read_text(encoding="utf-8"))
            pid, host, started = int(owner["pid"]), str(owner["host"]), str(owner["started"])
        except FileNotFoundError:
            return  # released in the meantime
        except (OSError, ValueError, KeyError, TypeError):
            print(f"{lock}: unreadable lock file; taking the directory over")
            lock.unlink(missing_ok=True)
            return
        if host != socket.gethostname() or _alive(pid):
            raise UserError(f"{self.path}: in use by another `emoneuron run` (pid {pid}@{host} "
                            f"since {started}); wait for it to finish or use another --out "
                            f"(delete {lock} only if that process is gone)")
        print(f"{self.path}: taking over from pid {pid}@{host} (since {started}), which is no "
              "longer running")
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists; a pid no process can have (0 or less, which os.kill
    reads as a process group, or beyond the system's range) is no owner."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def check_neurons(payload: Any, path: Path, n_layers: int, width: int) -> None:
    """Refuse a neurons.json payload that does not parse or holds a neuron outside a model of
    this shape."""
    from emoneuron.selection.neurons import check_inside, parse_neurons

    try:
        emotions = parse_neurons(payload["emotions"], path)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path}: not a valid neurons.json ({error!r}); write one with "
                        "`emoneuron identify`") from None
    check_inside(emotions, path, n_layers, width)


@dataclass(frozen=True)
class OpenRun:
    """A finished run, read and verified against its manifest (:func:`open_run`).

    Args:
        path: the run directory
        manifest: manifest.json: the run's settings, model, data, versions, timings and files
        tables: every CSV table the run wrote, by name without ``.csv`` (``setlevel``,
            ``ablation``, ``effects``, ...; a compared method's as ``methods/NAME/TABLE``)
        sets: the run's own neuron sets (neurons.json)
        methods: each compared method's sets (methods/NAME/neurons.json), by name
    """

    path: Path
    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    sets: NeuronSets
    methods: dict[str, NeuronSets]


def open_run(directory: str | Path) -> OpenRun:
    """The finished run in ``directory``: each table a pandas DataFrame and each method's sets
    :class:`~emoneuron.selection.neurons.NeuronSets`, every file checked against the sha256
    its manifest lists (a missing, changed or unlisted file is refused, naming it).

    >>> run = open_run("runs/demo")  # doctest: +SKIP
    >>> run.tables["setlevel"].query("beyond").masked_emotion.tolist()  # doctest: +SKIP
    ['sadness', 'sadness']
    """
    run_dir = RunDir(directory)
    manifest = run_dir.manifest()
    run_dir.check_listed()
    listed = sorted(run_dir.listed() or run_dir.files())
    tables = {name.removesuffix(".csv"): run_dir.table(name)
              for name in listed if name.endswith(".csv")}
    methods = {name.split("/")[1]: run_dir.neurons(name) for name in listed
               if name.startswith(f"{METHODS}/") and name.endswith(f"/{NEURONS}")}
    return OpenRun(run_dir.path, manifest, tables, run_dir.neurons(), methods)
