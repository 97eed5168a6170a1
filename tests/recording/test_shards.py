"""Two shards recorded separately and merged equal the recording of their union, for every
statistic: grouped moments, histograms, top-k examples and every score computed from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emoneuron.data.schema import Record
from emoneuron.errors import UserError
from emoneuron.models.adapters import PRE_ACTIVATION_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record
from emoneuron.recording.statistics import Recording
from emoneuron.selection.scores import STATISTICS, compute_scores

MakeTiny = Callable[[str], LoadedModel]


def _record(loaded: LoadedModel, items: list[Record], batch_size: int,
            site: str = "mlp.down_proj.input") -> Recording:
    return record(loaded, items, RecordConfig(token_policy="dialogue", batch_size=batch_size,
                                              site=site, groups=4, top_k=3), progress=False)


@pytest.mark.parametrize(("family", "site"), [("llama", "mlp.down_proj.input"),
                                              ("gpt2", PRE_ACTIVATION_SITE)])
def test_merged_shards_equal_the_union(make_tiny: MakeTiny, records: list[Record], family: str,
                                       site: str) -> None:
    loaded = make_tiny(family)
    first, second = records[:5], records[5:]
    merged = _record(loaded, first, 2, site).merge(_record(loaded, second, 3, site))
    union = _record(loaded, records, 4, site)
    assert torch.equal(merged.tokens, union.tokens)
    assert torch.equal(merged.active, union.active)
    assert torch.equal(merged.histogram, union.histogram)
    torch.testing.assert_close(merged.sum, union.sum, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged.sum_sq, union.sum_sq, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged.top_values, union.top_values, rtol=1e-5, atol=1e-6)
    assert torch.equal(merged.top_dialogue, union.top_dialogue)
    for statistic in STATISTICS:
        mine = compute_scores(merged.stats(), statistic, activity_quantile=0.5)
        whole = compute_scores(union.stats(), statistic, activity_quantile=0.5)
        torch.testing.assert_close(mine.per_emotion, whole.per_emotion, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mine.overall, whole.overall, rtol=1e-5, atol=1e-6)
    # Not vacuous: the shards hold different dialogues, and both contribute to the top-k.
    assert merged.histogram.sum() > _record(loaded, first, 2, site).histogram.sum()
    shard_hashes = {int(h) for h in _record(loaded, second, 3, site).top_dialogue.flatten()}
    merged_hashes = {int(h) for h in merged.top_dialogue.flatten()}
    assert merged_hashes & shard_hashes and merged_hashes - shard_hashes


def test_merge_refuses_other_groups_or_site(make_tiny: MakeTiny, records: list[Record]) -> None:
    loaded = make_tiny("llama")
    base = _record(loaded, records[:2], 2)
    other_groups = record(loaded, records[2:4], RecordConfig(groups=5, top_k=3), progress=False)
    other_site = _record(loaded, records[2:4], 2, PRE_ACTIVATION_SITE)
    for other in (other_groups, other_site):
        with pytest.raises(UserError, match="cannot merge"):
            base.merge(other)


@pytest.mark.parametrize("kwargs", [{"groups": 0}, {"top_k": 0}])
def test_no_groups_or_top_k_is_a_user_error(make_tiny: MakeTiny, records: list[Record],
                                            kwargs: dict[str, int]) -> None:
    with pytest.raises(UserError, match="at least 1"):
        record(make_tiny("llama"), records, RecordConfig(**kwargs), progress=False)


def test_statistics_of_the_previous_format_are_refused(tmp_path: Path) -> None:
    """Format 1 (per-emotion moments only) has no groups, histograms or top-k."""
    path = tmp_path / "stats.safetensors"
    moments = torch.zeros(6, 2, 4, dtype=torch.float64)
    save_file({"tokens": torch.zeros(6, dtype=torch.float64), "active": moments,
               "sum": moments.clone(), "sum_sq": moments.clone()}, str(path),
              {"site": "mlp.down_proj.input"})
    with pytest.raises(UserError, match=r"format 1.*record again"):
        Recording.load(path)
