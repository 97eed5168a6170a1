"""What a recording depends on besides the model and the data: :class:`RecordConfig`,
importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from emoneuron.errors import UserError
from emoneuron.io import read_json
from emoneuron.models.config import ACTIVATION_SITE, Site
from emoneuron.options import at_least, check_fields, check_seeds

TokenPolicy = Literal["dialogue", "last", "all"]
TOKEN_POLICIES: tuple[TokenPolicy, ...] = get_args(TokenPolicy)
Kernel = Literal["auto", "c", "torch"]
DEFAULT_GROUPS = 16
DEFAULT_TOP_K = 8


@dataclass(frozen=True)
class RecordConfig:
    """How to record neuron statistics (:func:`emoneuron.recording.recorder.record`).

    >>> RecordConfig(token_policy="last").batch_size
    16

    Args:
        site: the neuron tensor to record: the down projection's input (act(gate) * up),
            act(gate) alone (the default selection method's, LAPE's), or the gate before its
            activation
        token_policy: which positions count: the turns' own words, each dialogue's last
            token, or every token
        batch_size: dialogues per forward pass (speed and memory only)
        groups: dialogue groups per emotion, resampled by the bootstrap and the null
        top_k: strongest dialogues kept per neuron, for its card
        group_seed: seed of the dialogues' assignment to groups
        kernel: how the hooks compute the statistics on a CPU: a C pass compiled at first use,
            torch operators, or auto (C where a compiler builds it); results are bit-identical
        residual: also keep each dialogue's mean residual stream over its own words, per
            residual layer (the features of the label-free probe and the emotion directions)
    """

    # The default selection method's site (emoneuron.selection.config.DEFAULT_SELECTION).
    site: Site = ACTIVATION_SITE
    token_policy: TokenPolicy = "dialogue"
    batch_size: int = 16
    groups: int = DEFAULT_GROUPS
    top_k: int = DEFAULT_TOP_K
    group_seed: int = 0
    kernel: Kernel = "auto"
    residual: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("batch_size", "groups", "top_k"):
            at_least(name, getattr(self, name), 1)
        check_seeds("group_seed", (self.group_seed,))


def check_description_beside(out: str | Path, flag: str = "--out") -> None:
    """A recording written to ``X.safetensors`` also writes its description to ``X.json``:
    refuse an ``out`` whose ``X.json`` is the file itself, or an existing file that is no
    recording's description (a JSON object with its ``format`` and ``site``), so the user's
    own ``X.json`` is never replaced."""
    beside = Path(out).with_suffix(".json")
    if beside == Path(out):
        example = beside.with_suffix(".safetensors")
        raise UserError(f"{flag} {out}: the statistics' description is written to the same "
                        f"name; give a .safetensors file, e.g. {example}")
    if not beside.exists():
        return
    try:
        payload = read_json(beside)
    except (OSError, ValueError):
        payload = None
    if not (isinstance(payload, dict) and {"format", "site"} <= payload.keys()):
        raise UserError(f"{flag} {out}: its description is written beside it to {beside}, "
                        "which holds another file; move that file or give another name")
