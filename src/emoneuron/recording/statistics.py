"""Per-emotion neuron statistics: the data type a recording pass fills, model-free.

Everything kept is additive, so statistics of two shards merged equal those of the union
(:meth:`Recording.merge`), and memory does not grow with the data.

* Moments per (emotion, group, layer, neuron): counted tokens, tokens with activation > 0, sum,
  sum of squares. Each dialogue falls into one of ``groups`` groups by a seeded hash of its id;
  per-emotion totals are sums over groups. Groups are what the bootstrap resamples and what the
  label-shuffle null permutes (:mod:`emoneuron.selection.stability`), so both need no second pass.
* A histogram per (emotion, layer, neuron) over fixed bin edges (:func:`bin_edges`, the same for
  every site and model so shards merge exactly), int32; AUROC is computed from it.
* The top-k activations of each neuron, one per dialogue (its strongest counted token), with the
  dialogue (a 64-bit hash of its id), for neuron cards; merging keeps the top k of the union.
* Where asked (``RecordConfig(residual=True)``), each dialogue's mean residual stream over its
  own words per residual layer, (N, layers + 1, hidden) float32, rows in record order: not
  additive but one row per dialogue, so merging concatenates them (shards in record order).

This module needs torch and safetensors only; the pass that fills it is
:mod:`emoneuron.recording.recorder`.

>>> from emoneuron.recording.statistics import Recording
>>> recording = Recording.load("runs/demo/stats.safetensors")  # doctest: +SKIP
>>> recording.stats().probability().shape  # doctest: +SKIP
torch.Size([6, 30, 1536])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import atomic_open, write_json
from emoneuron.layout import STATS
from emoneuron.models.config import DEFAULT_SITE
from emoneuron.recording.config import TOKEN_POLICIES, TokenPolicy

RECORDING_FORMAT = "2"  # grouped moments, histograms and top-k; format 1 had moments only


# Histogram bins are octaves of |activation|: 2^-10 .. 2^4 on each side of 0, 32 bins in all.
OCTAVES = 15  # finite edges per sign
SMALLEST_EXPONENT = -10  # |x| < 2^-10 counts as about zero


def bin_edges() -> torch.Tensor:
    """The 31 fixed edges of the 32 histogram bins: 0 and +-2^(-10 .. 4).

    Activations of FFN sites are concentrated near 0 with long tails, and their scale differs
    between sites and models; octave bins resolve every scale alike without a calibration pass,
    and the open outer bins hold everything beyond +-16. The recorder finds a value's octave
    from the exponent bits of its float16 rounding (:func:`octave_bins`); a value exactly on a
    negative edge falls into the bin above it. The edges are a
    constant, never fitted to data, so histograms of any two shards add exactly."""
    positive = 2.0 ** torch.arange(SMALLEST_EXPONENT, SMALLEST_EXPONENT + OCTAVES,
                                   dtype=torch.float64)
    return torch.cat([-positive.flip(0), torch.zeros(1, dtype=torch.float64), positive])


N_BINS = 2 * (OCTAVES + 1)


HALF_KEYS = 64  # sign and exponent of a float16: the top 6 of its 16 bits


def _bin_of_half_key() -> torch.Tensor:
    """Bin of each float16 sign-and-exponent key plus 32 (:func:`half_keys`): keys below 32 are
    negative values with exponent field ``key``, the others non-negative with ``key - 32``."""
    key = torch.arange(HALF_KEYS)
    exponent = key % 32  # floor(log2 |x|) + 15; 0 for zero and subnormals (|x| < 2^-14)
    octave = (exponent - (15 + SMALLEST_EXPONENT - 1)).clamp(0, OCTAVES)
    return torch.where(key >= 32, N_BINS // 2 + octave, N_BINS // 2 - 1 - octave)


BIN_OF_HALF_KEY = _bin_of_half_key()


def half_keys(values: torch.Tensor, halves: torch.Tensor | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """The sign and exponent of each value rounded to float16, as an int32 from -32 to 31:
    the key a histogram counts before :data:`BIN_OF_HALF_KEY` folds it into its bin. float16
    covers every edge (2^-10 .. 2^4) and anything larger still lands in the open top bin; a
    conversion and a shift replace a table lookup per value. ``halves`` (float16) and ``out``
    (int32), shaped like ``values``, are work buffers to use instead of new tensors."""
    halves = values.half() if halves is None else halves.copy_(values)
    shifted = halves.view(torch.int16).bitwise_right_shift_(10)
    return shifted.int() if out is None else out.copy_(shifted)


def octave_bins(values: torch.Tensor) -> torch.Tensor:
    """The histogram bin (0 .. N_BINS - 1, increasing with the value) of each value: N_BINS/2
    + m for x >= 0, N_BINS/2 - 1 - m for x < 0 (-0.0 included), where m is the octave of |x|
    above 2^-10, clamped to 0 .. OCTAVES, read from the value rounded to float16 (so a value
    within 2^-11 of an edge, relatively, may count in the bin above it)."""
    return BIN_OF_HALF_KEY.to(values.device)[half_keys(values) + HALF_KEYS // 2]


def dialogue_hash(record_id: str) -> int:
    """A signed 64-bit hash of a dialogue id: how top-k examples name their dialogue."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big", signed=True)


def dialogue_group(record_id: str, groups: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % groups


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 description: dict[str, Any]) -> None:
    """``tensors`` to ``path`` as safetensors, whose header carries ``description`` (JSON
    values as text), and the same description as readable JSON beside it (``.json``)."""
    header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in description.items()}
    blob = save({k: v.contiguous().cpu() for k, v in tensors.items()}, header)
    with atomic_open(path, "wb") as handle:
        handle.write(_sorted_header(blob))
    write_json(Path(path).with_suffix(".json"), description)


def _sorted_header(blob: bytes) -> bytes:
    """``blob`` with its JSON header's keys sorted: safetensors writes the metadata in hash
    order, which differs between processes, so the same tensors would give different files
    (and file hashes). The header keeps its length (the same JSON, reordered), so the tensor
    offsets after it hold."""
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    ordered = json.dumps(header, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode()
    if len(ordered) > length:  # another escaping than serde's; keep the valid original
        return blob
    return blob[:8] + ordered.ljust(length) + blob[8 + length:]


def load_tensors(path: str | Path, kind: str,
                 source: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header and tensors of a safetensors file; a :class:`UserError` naming the ``kind``
    of file ("a statistics file") and its ``source`` (what writes one) where it cannot be
    read."""
    if Path(path).is_dir():
        raise UserError(f"{path}: a directory, not {kind}; give the .safetensors file {source}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        return header, load_file(str(path))
    except Exception as error:  # safetensors raises several unrelated types
        raise UserError(f"{path}: not {kind} (safetensors) or a damaged one ({error}); "
                        f"give the .safetensors file {source}") from None


def best_indices(values: torch.Tensor, dialogues: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Indices of the ``k`` largest float32 ``values`` along ``dim``. Equal values (dialogues
    with the same opening tokens) are ordered by their dialogue hash, so any order of shards
    and batches keeps the same ones: one int64 key per value, the value's bits made
    order-preserving above the hash's low 20 bits, and one top-k on it (far cheaper than two
    sorts, or a float64 key)."""
    bits = values.view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # ascending with the value; -0.0 below +0.0
    key = (ordered.long() << 20) | (dialogues & 0xFFFFF)
    return key.topk(k, dim=dim).indices


@dataclass
class ActivationStats:
    """Per-emotion statistics: ``tokens`` is (E,), moments (E, layers, width), ``histogram``
    (E, layers, width, bins) or None where it cannot be formed (bootstrap resamples)."""

    tokens: torch.Tensor
    active: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    site: str = DEFAULT_SITE
    token_policy: TokenPolicy = "dialogue"
    histogram: torch.Tensor | None = None

    @classmethod
    def zeros(cls, n_layers: int, width: int, site: str, token_policy: TokenPolicy,
              device: torch.device | str = "cpu") -> ActivationStats:
        shape = (len(EMOTIONS), n_layers, width)
        return cls(tokens=torch.zeros(len(EMOTIONS), dtype=torch.float64, device=device),
                   active=torch.zeros(shape, dtype=torch.float64, device=device),
                   sum=torch.zeros(shape, dtype=torch.float64, device=device),
                   sum_sq=torch.zeros(shape, dtype=torch.float64, device=device),
                   site=site, token_policy=token_policy)

    @property
    def n_layers(self) -> int:
        return int(self.active.shape[1])

    @property
    def width(self) -> int:
        return int(self.active.shape[2])

    def probability(self) -> torch.Tensor:
        """P(activation > 0 | emotion), shape (E, layers, width)."""
        return self.active / self.tokens.clamp(min=1).view(-1, 1, 1)


class GroupedCells:
    """Sizes of statistics kept per (emotion, group, layer, neuron) cell: :meth:`cells` is
    laid out (E, G, L, W)."""

    def cells(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def groups(self) -> int:
        return int(self.cells().shape[1])

    @property
    def n_layers(self) -> int:
        return int(self.cells().shape[2])

    @property
    def width(self) -> int:
        return int(self.cells().shape[3])


@dataclass
class Recording(GroupedCells):
    """What one recording pass keeps (see the module docstring); E emotions, G groups,
    L layers, W neurons per layer, B bins, K top activations per neuron."""

    tokens: torch.Tensor  # (E, G) float64
    active: torch.Tensor  # (E, G, L, W) float64
    sum: torch.Tensor  # (E, G, L, W) float64
    sum_sq: torch.Tensor  # (E, G, L, W) float64
    histogram: torch.Tensor  # (E, L, W, B) int32
    top_values: torch.Tensor  # (L, K, W) float32, -inf where fewer than K dialogues were seen
    top_dialogue: torch.Tensor  # (L, K, W) int64 dialogue_hash
    site: str = DEFAULT_SITE
    token_policy: TokenPolicy = "dialogue"
    group_seed: int = 0
    # (N, L + 1, hidden) float32, one row per dialogue in record order; None where not recorded
    residual_means: torch.Tensor | None = None

    def cells(self) -> torch.Tensor:
        return self.active

    def digest(self) -> str:
        """A hash of the statistics themselves; a saved file's bytes vary from save to save
        (safetensors orders its header at random). Residual means not recorded leave it as
        it was before recordings could carry them."""
        digest = hashlib.sha256()
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            digest.update(spec.name.encode())
            digest.update(value.contiguous().cpu().numpy().tobytes()
                          if isinstance(value, torch.Tensor) else repr(value).encode())
        return digest.hexdigest()

    @property
    def top_k(self) -> int:
        return int(self.top_values.shape[1])

    def stats(self) -> ActivationStats:
        """Per-emotion totals (sums over groups), with the histograms."""
        return ActivationStats(tokens=self.tokens.sum(1), active=self.active.sum(1),
                               sum=self.sum.sum(1), sum_sq=self.sum_sq.sum(1), site=self.site,
                               token_policy=self.token_policy,
                               histogram=self.histogram)

    def combined(self, weights: torch.Tensor) -> ActivationStats:
        """Per-emotion statistics where emotion ``e`` is the ``weights[e]``-weighted sum of all
        E*G (emotion, group) cells: resampled or relabelled data from the same pass. The
        histograms are per emotion, not per group, so these carry none."""
        flat_weights = weights.to(torch.float64).reshape(len(EMOTIONS), -1)

        def mix(tensor: torch.Tensor) -> torch.Tensor:
            cells = tensor.reshape(flat_weights.shape[1], -1)
            return (flat_weights @ cells).reshape(len(EMOTIONS), *tensor.shape[2:])

        return ActivationStats(tokens=mix(self.tokens), active=mix(self.active),
                               sum=mix(self.sum), sum_sq=mix(self.sum_sq), site=self.site,
                               token_policy=self.token_policy)

    def merge(self, other: Recording) -> Recording:
        """The recording of both shards' data together, ``other``'s dialogues after this one's:
        residual means are concatenated, so merge shards in record order (as
        :func:`~emoneuron.recording.recorder.record_sharded` does)."""
        if (other.site, other.token_policy, other.group_seed, other.active.shape,
                other.top_k, other.residual_means is None) != (
                    self.site, self.token_policy, self.group_seed, self.active.shape,
                    self.top_k, self.residual_means is None):
            raise UserError("cannot merge recordings with a different site, token policy, "
                            "group seed, number of groups, top-k, model shape or residual "
                            "means; record both shards with the same settings")
        residual_means = (None if self.residual_means is None or other.residual_means is None
                          else torch.cat([self.residual_means, other.residual_means]))
        values = torch.cat([self.top_values, other.top_values], dim=1)
        dialogues = torch.cat([self.top_dialogue, other.top_dialogue], dim=1)
        order = best_indices(values, dialogues, self.top_k, dim=1)
        return Recording(
            tokens=self.tokens + other.tokens, active=self.active + other.active,
            sum=self.sum + other.sum, sum_sq=self.sum_sq + other.sum_sq,
            histogram=self.histogram + other.histogram, top_values=values.gather(1, order),
            top_dialogue=dialogues.gather(1, order),
            site=self.site, token_policy=self.token_policy, group_seed=self.group_seed,
            residual_means=residual_means)

    def save(self, path: str | Path, metadata: dict[str, Any]) -> None:
        """Tensors to ``path`` (safetensors, header carries the description too) and the same
        description as readable JSON beside it (``.json``)."""
        tensors = {spec.name: getattr(self, spec.name) for spec in fields(self)
                   if isinstance(getattr(self, spec.name), torch.Tensor)}
        tensors["bin_edges"] = bin_edges()
        description = {"format": RECORDING_FORMAT, "site": self.site,
                       "token_policy": self.token_policy, "groups": self.groups,
                       "group_seed": self.group_seed, "top_k": self.top_k,
                       "emotions": list(EMOTIONS), "n_layers": self.n_layers,
                       "width": self.width, "residual_means": self.residual_means is not None,
                       "tokens": dict(zip(EMOTIONS, self.tokens.sum(1).tolist(), strict=True)),
                       "digest": self.digest(), **metadata}
        save_tensors(path, tensors, description)

    @classmethod
    def load(cls, path: str | Path, require_digest: bool = False) -> Recording:
        """The recording saved in ``path``, refused (a UserError) when its statistics differ
        from the content hash saved with them (a file changed or damaged inside, its header
        intact); ``require_digest`` also refuses a file saved without one (written before
        recordings carried it)."""
        header, tensors = load_tensors(
            path, "a statistics file", f"`emoneuron record --out` writes (a run's: DIR/{STATS})")
        if header.get("format") != RECORDING_FORMAT:
            raise UserError(f"{path}: statistics format {header.get('format', '1')}, this "
                            f"emoneuron reads format {RECORDING_FORMAT}; record again")
        names = [spec.name for spec in fields(cls) if spec.type == "torch.Tensor"]
        missing = [name for name in names if name not in tensors]
        if missing:
            raise UserError(f"{path}: not a statistics file (no {', '.join(missing)} tensors); "
                            "record again with `emoneuron record`")
        if not torch.equal(tensors.get("bin_edges", torch.zeros(0)), bin_edges()):
            raise UserError(f"{path}: histogram bin edges differ from this emoneuron's; "
                            "record again")
        policy = next((p for p in TOKEN_POLICIES if p == header["token_policy"]), None)
        if policy is None:
            raise UserError(f"{path}: unknown token policy {header['token_policy']!r}; "
                            "record again")
        recording = cls(**{name: tensors[name] for name in names}, site=header["site"],
                        token_policy=policy, group_seed=int(header["group_seed"]),
                        residual_means=tensors.get("residual_means"))
        if "digest" not in header and require_digest:
            raise UserError(f"{path}: saved without the hash of its statistics; record again")
        digest = recording.digest()
        if header.get("digest", digest) != digest:
            raise UserError(f"{path}: its statistics differ from the hash saved with them "
                            "(changed or damaged since written); record again")
        return recording
