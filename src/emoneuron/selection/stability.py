"""How much to trust an emotion's neuron set: bootstrap, shuffled-label null and agreement.

All three come from the one recording pass. The recorder sums every dialogue into one of G
groups per emotion (a seeded hash of its id, :func:`emoneuron.recording.statistics.dialogue_group`),
so a group holds whole dialogues of one emotion, and any per-emotion statistic of resampled or
relabelled data is a weighted sum of the E*G group cells (:meth:`Recording.combined`):

bootstrap
    per emotion, draw that emotion's non-empty groups with replacement (as many as it has);
    select with the same statistic and rule; compare each emotion's set with the set on all the
    data (Jaccard) and between resamples. Resampling whole groups resamples whole dialogues, the
    unit that is independent; with 1-2 dialogues per group it is close to a dialogue bootstrap.
    Each resample's set also gives its mean relative depth (layer / layers, as the comparison
    of models measures it): the percentile interval over resamples is that of the set's depth.
null
    shuffle the emotion labels of the non-empty group cells (a group-level permutation: groups
    are emotion-pure, so this permutes dialogues in blocks of a group), select again without the
    share / top-n cap and count, per emotion, the neurons the rule assigns to it whose score
    reaches the lowest score in the real set. With a cap the count is fixed by construction;
    this count is how many neurons of the real set's quality labels without meaning give, an
    estimate of the false discoveries in it.
agreement
    Jaccard between each emotion's sets under every statistic, same rule and parameters.

The histograms that AUROC needs are kept per emotion, not per group (that would cost G times
the memory), so AUROC has agreement but no bootstrap or null.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from emoneuron.data.schema import EMOTIONS
from emoneuron.io import write_json
from emoneuron.recording.statistics import Recording
from emoneuron.selection.config import StabilityConfig as StabilityConfig
from emoneuron.selection.identify import IdentifyConfig, identify, membership
from emoneuron.selection.scores import STATISTICS


def _bootstrap_weights(recording: Recording, generator: torch.Generator) -> torch.Tensor:
    """(E, E*G) multiplicities: each emotion's non-empty groups drawn with replacement."""
    groups = recording.groups
    weights = torch.zeros(len(EMOTIONS), len(EMOTIONS) * groups, dtype=torch.float64)
    for e in range(len(EMOTIONS)):
        present = (recording.tokens[e] > 0).nonzero().flatten() + e * groups
        if len(present):
            draws = present[torch.randint(len(present), (len(present),), generator=generator)]
            weights[e].index_add_(0, draws, torch.ones(len(draws), dtype=torch.float64))
    return weights


def permuted_weights(recording: Recording, generator: torch.Generator) -> torch.Tensor:
    """(E, E*G) 0/1: the non-empty cells' emotion labels shuffled among them."""
    cells = (recording.tokens.flatten() > 0).nonzero().flatten()
    labels = cells // recording.groups
    shuffled = labels[torch.randperm(len(labels), generator=generator)]
    weights = torch.zeros(len(EMOTIONS), len(EMOTIONS) * recording.groups, dtype=torch.float64)
    weights[shuffled, cells] = 1.0
    return weights


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _summary(values: list[float]) -> dict[str, float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    return {"mean": round(float(tensor.mean()), 4),
            "p05": round(float(tensor.quantile(0.05)), 4),
            "p95": round(float(tensor.quantile(0.95)), 4)}


def relative_depths(sets: torch.Tensor, n_layers: int) -> list[float | None]:
    """Mean relative depth (layer / ``n_layers``) of each row of a (B, layers * width) bool
    tensor of flattened neuron sets; None for an empty set.

    >>> relative_depths(torch.tensor([[True, False, False, True], [False] * 4]), 2)
    [0.25, None]
    """
    width = sets.shape[1] // n_layers
    depth = (torch.arange(sets.shape[1]) // width).double() / n_layers
    sizes = sets.sum(1)
    means = (sets.double() @ depth) / sizes.clamp(min=1)
    return [round(float(m), 6) if int(n) else None for m, n in zip(means, sizes, strict=True)]


def _depth_interval(full: float | None, resampled: list[float | None]) -> dict[str, Any]:
    """The full set's mean relative depth, and the 95% percentile interval over the resamples
    whose set is not empty (each resample's value kept, for differences between models).

    Percentile, not bias-corrected or basic: in bench/depth_coverage.py's simulation neither
    covers the true depth more often, and both cover it less where sets are stable. None of
    them reaches 95% there (docs/methods.md has the table)."""
    found = [d for d in resampled if d is not None]
    interval = ([round(q, 6) for q in torch.tensor(found, dtype=torch.float64).quantile(
        torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()] if found else [None, None])
    return {"estimate": full, "ci_low": interval[0], "ci_high": interval[1],
            "interval": "percentile", "empty_resamples": len(resampled) - len(found),
            "resamples": resampled}


def _pairwise_mean_jaccard(sets: torch.Tensor) -> float:
    """Mean Jaccard over all pairs of rows of a (B, N) bool tensor."""
    x = sets.double()
    inter = x @ x.T
    sizes = x.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    jaccard = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    pairs = torch.triu_indices(len(x), len(x), offset=1)
    return float(jaccard[pairs[0], pairs[1]].mean())


def stability(recording: Recording, config: IdentifyConfig,
              settings: StabilityConfig = StabilityConfig(), progress: bool = True
              ) -> dict[str, Any]:
    """Bootstrap Jaccard and null counts per emotion, and agreement between statistics."""
    generator = torch.Generator().manual_seed(settings.seed)
    full = recording.stats()
    members, score = membership(full, config)
    real = members.flatten(1)
    cutoff = [float(score[e][members[e]].min()) if bool(members[e].any()) else float("inf")
              for e in range(len(EMOTIONS))]
    n_layers = members.shape[1]
    full_depth = relative_depths(real, n_layers)
    per_emotion: dict[str, dict[str, Any]] = {
        e: {"count": int(real[i].sum()),
            "score_cutoff": cutoff[i] if cutoff[i] != float("inf") else None,
            "mean_relative_depth": _depth_interval(full_depth[i], [])}
        for i, e in enumerate(EMOTIONS)}
    resampled = config.statistic != "auroc"
    if resampled:
        boot = []
        for _ in tqdm(range(settings.resamples), desc="bootstrap", disable=not progress):
            boot.append(membership(recording.combined(
                _bootstrap_weights(recording, generator)), config)[0].flatten(1))
        boots = torch.stack(boot)  # (B, E, N)
        nulls = []
        for _ in tqdm(range(settings.permutations), desc="null", disable=not progress):
            null_members, null_score = membership(recording.combined(
                permuted_weights(recording, generator)), config, capped=False)
            nulls.append([int((null_members[e] & (null_score[e] >= cutoff[e])).sum())
                          for e in range(len(EMOTIONS))])
        for i, emotion in enumerate(EMOTIONS):
            counts = [row[i] for row in nulls]
            per_emotion[emotion].update({
                "bootstrap_jaccard_to_full": _summary(
                    [_jaccard(b[i], real[i]) for b in boots]),
                "bootstrap_jaccard_pairwise_mean": round(_pairwise_mean_jaccard(boots[:, i]), 4),
                "mean_relative_depth": _depth_interval(full_depth[i], relative_depths(
                    boots[:, i], n_layers)),
                "null_count": {"mean": round(sum(counts) / len(counts), 2),
                               "max": max(counts),
                               "p95": round(float(torch.tensor(counts, dtype=torch.float64)
                                                  .quantile(0.95)), 2)}})
    return {"site": recording.site, "statistic": config.statistic, "rule": config.rule,
            "parameters": dataclasses.asdict(config), "groups": recording.groups,
            "non_empty_groups": {e: int((recording.tokens[i] > 0).sum())
                                 for i, e in enumerate(EMOTIONS)},
            "resamples": settings.resamples if resampled else 0,
            "permutations": settings.permutations if resampled else 0,
            "seed": settings.seed, "emotions": per_emotion,
            "agreement": agreement(recording, config)}


def agreement(recording: Recording, config: IdentifyConfig) -> dict[str, Any]:
    """Jaccard between the sets each statistic selects under the same rule, per emotion."""
    # The other statistics' empty sets are part of the comparison, not news for the user.
    sets = {statistic: identify(recording, dataclasses.replace(config, statistic=statistic), "",
                                warn_empty=False)
            for statistic in STATISTICS}
    positions = {s: {e: {(n.layer, n.index) for n in ns.emotions[e]} for e in EMOTIONS}
                 for s, ns in sets.items()}

    def jaccard(a: set[tuple[int, int]], b: set[tuple[int, int]]) -> float:
        return 1.0 if not a | b else round(len(a & b) / len(a | b), 4)

    matrices = {e: [[jaccard(positions[a][e], positions[b][e]) for b in STATISTICS]
                    for a in STATISTICS] for e in EMOTIONS}
    mean = [[round(sum(matrices[e][i][j] for e in EMOTIONS) / len(EMOTIONS), 4)
             for j in range(len(STATISTICS))] for i in range(len(STATISTICS))]
    return {"statistics": list(STATISTICS), "jaccard": matrices, "mean_over_emotions": mean}


def write_stability(recording: Recording, config: IdentifyConfig, path: str | Path,
                    settings: StabilityConfig = StabilityConfig(),
                    progress: bool = True) -> dict[str, Any]:
    report = stability(recording, config, settings, progress)
    write_json(path, report)
    return report
