"""A label-free readout of emotion: a linear probe on the residual stream, per layer.

The classifier (:mod:`emoneuron.causal.evaluation.classifier`) asks the model to name the emotion
after a few-shot prompt, so an ablation that changes its answer may only change how the answer is
read out. The probe reads what the model represents while it reads the dialogue: the dialogue is
rendered alone (``Speaker: text`` lines, :func:`emoneuron.data.render.render_dialogue`), with no
instruction and no label word, and nothing is generated or scored.

1. Features: ``features = residual_features(loaded, records)``, float32 (N, n_layers + 1,
   hidden): per dialogue and residual layer, the mean of the residual stream over the tokens of
   the dialogue's own words (speaker tags, line breaks and BOS left out). Layer 0 is the
   embeddings' output and layer l + 1 the output of block l, as transformers'
   ``output_hidden_states`` numbers them (its last one is after the final norm). The
   recording pass computes the same means (:func:`emoneuron.recording.recorder.word_means`)
   where ``RecordConfig(residual=True)`` asks: a run takes its identification split's from
   its recording, and calls this for the evaluation split only.
2. Probe: ``probe = Probe.fit(features, emotion_labels(records))``: per layer, a multinomial
   logistic regression on standardised features with an L2 penalty chosen by seeded k-fold
   cross-validation on these training features only (held-out data never chooses anything).
   ``probe.with_held_out(held_features, labels)`` records its held-out accuracy per layer;
   ``probe.save(path)`` and ``Probe.load(path)`` keep it (a run holds ``probe.safetensors`` and
   ``probe.json``).
3. Ablation: ``probe_outcomes(loaded, probe, held_out, ablation)``, (N, layers) bool: whether
   the fixed probe (trained without any ablation) still names each held-out dialogue's emotion,
   per layer, while ``ablation`` acts on the dialogue being read. Only
   :func:`layers_after` the ablation's first layer can change.

>>> features = residual_features(loaded, identify)  # doctest: +SKIP
>>> probe = Probe.fit(features, emotion_labels(identify))  # doctest: +SKIP
>>> probe_outcomes(loaded, probe, held_out, Ablation.of({12: [7, 80]})).shape  # doctest: +SKIP
(90, 31)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from emoneuron.causal.evaluation.intervene import TokenScope
from emoneuron.causal.evaluation.residual import Intervention, intervened
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.recorder import encode_for_recording, word_means
from emoneuron.recording.statistics import load_tensors, save_tensors

PROBE_FORMAT = "1"
FEATURES = ("residual stream (transformers' hidden_states: 0 embeddings, l + 1 after block l), "
            "mean over the dialogue's own word tokens, the dialogue rendered alone")
# Penalties on the mean cross-entropy (weights of standardised features; the bias is free).
L2_CANDIDATES = (1e-3, 1e-2, 1e-1, 1.0)
FOLDS = 5
# LBFGS stops when no gradient entry exceeds this, or after this many iterations.
GRADIENT_TOLERANCE = 1e-4
MAX_ITERATIONS = 200


def residual_features(loaded: LoadedModel, records: Sequence[Record],
                      ablation: Intervention | None = None, batch_size: int = 16,
                      progress: bool = False) -> torch.Tensor:
    """Per dialogue and residual layer, the mean residual stream over the dialogue's own word
    tokens: float32 (N, n_layers + 1, hidden) on the CPU, rows in the order of ``records``.

    With ``ablation`` (neurons, or directions), every forward pass runs inside
    :func:`~emoneuron.causal.evaluation.residual.intervened`: token scope ``all``
    acts on every position of the rendered dialogue, ``dialogue`` on its own words only;
    ``last`` is refused (the probe has no answer position).

    >>> residual_features(load("smollm2-135m"), synthesize(1)).shape  # doctest: +SKIP
    torch.Size([6, 31, 576])
    """
    if ablation is not None and ablation.tokens == "last":
        raise UserError("token scope 'last' has no meaning for the probe: it reads the whole "
                        "dialogue and scores no answer position; use tokens 'all' or "
                        "'dialogue'")
    features = torch.zeros((len(records), loaded.n_layers + 1, loaded.hidden))
    # Right-padded batches of the rendered dialogue, its own words marked, as the recorder
    # batches them; the decoder body alone, since no logits are needed.
    batches = list(encode_for_recording(loaded, records, "dialogue", batch_size))
    body = loaded.model.base_model
    scope: Any = intervened(loaded, ablation) if ablation is not None else nullcontext()
    with torch.inference_mode(), scope as token_scope:
        for batch in tqdm(batches, desc="probe features", unit="batch", disable=not progress,
                          leave=False):
            if isinstance(token_scope, TokenScope):
                token_scope.mask = batch.words
            hidden_states = body(input_ids=batch.input_ids.to(loaded.device),
                                 attention_mask=batch.attention_mask.to(loaded.device),
                                 output_hidden_states=True).hidden_states
            features[batch.record_index] = word_means(hidden_states, batch, records)
    return features


def emotion_labels(records: Sequence[Record]) -> torch.Tensor:
    """Each record's emotion as its index in :data:`EMOTIONS`, (N,) int64.

    >>> from emoneuron.data.schema import Turn
    >>> emotion_labels([Record("a", "fear", (Turn("A", "Hm?"),))]).tolist()
    [2]
    """
    return torch.tensor([EMOTIONS.index(record.emotion) for record in records],
                        dtype=torch.long)


def layers_after(ablation: Intervention, n_layers: int) -> range:
    """The residual layers an intervention can change: above its first layer's block (block l
    writes residual layer l + 1), up to the last, ``n_layers``; none for an empty one. A
    direction edited at residual layer r changes r and above.

    >>> from emoneuron.causal.evaluation.intervene import Ablation
    >>> from emoneuron.causal.evaluation.residual import DirectionAblation
    >>> list(layers_after(Ablation.of({2: [5], 4: [1]}), 5))
    [3, 4, 5]
    >>> list(layers_after(DirectionAblation.of({4: [1.0]}), 5))
    [4, 5]
    """
    if not ablation.size:
        return range(0)
    if ablation.first_layer >= n_layers:
        raise UserError(f"the ablation starts at layer {ablation.first_layer}, beyond this "
                        f"model's {n_layers} layers; were its neurons identified on another "
                        "model?")
    return range(ablation.first_layer + 1, n_layers + 1)


@dataclass(frozen=True, eq=False)
class Probe:
    """One multinomial logistic regression per residual layer, on features standardised with
    the training data's mean and standard deviation.

    ``l2`` is each layer's penalty on the weights (``l2 / 2 * |W|^2`` added to the mean
    cross-entropy), chosen from ``l2_candidates`` by cross-validation on the training data
    only. Accuracies are per layer: on the training data, cross-validated on it (at the chosen
    penalty; ``()`` with a fixed penalty) and on held-out data (``()`` until
    :meth:`with_held_out`).

    >>> generator = torch.Generator().manual_seed(0)
    >>> labels = torch.arange(60) % 6
    >>> features = torch.randn(60, 2, 6, generator=generator)
    >>> features[:, 1] += 5 * torch.eye(6)[labels]  # layer 1 carries the label, layer 0 not
    >>> probe = Probe.fit(features, labels, folds=3)
    >>> probe.cross_validated_accuracy[0] < 0.4, probe.cross_validated_accuracy[1] > 0.9
    (True, True)
    >>> probe.predict(features).shape
    (60, 2)
    """

    weight: torch.Tensor  # (layers, hidden, emotions) float64
    bias: torch.Tensor  # (layers, emotions)
    mean: torch.Tensor  # (layers, hidden): the training features' mean
    std: torch.Tensor  # (layers, hidden): their standard deviation (1 where constant)
    l2: tuple[float, ...]
    l2_candidates: tuple[float, ...]
    folds: int
    seed: int
    train_accuracy: tuple[float, ...]
    cross_validated_accuracy: tuple[float, ...] = ()
    held_out_accuracy: tuple[float, ...] = ()

    @property
    def n_layers(self) -> int:
        """Residual layers read (the model's layers + 1)."""
        return int(self.weight.shape[0])

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor | Sequence[int],
            l2: float | Sequence[float] = L2_CANDIDATES, folds: int = FOLDS,
            seed: int = 0) -> Probe:
        """Fit on ``features`` (N, layers, hidden) and ``labels`` (N,) emotion indices.

        A sequence ``l2`` is a set of candidates: each layer takes the one with the lowest
        cross-entropy over ``folds`` seeded folds, stratified by emotion, of this training data
        (never of held-out data), then is refitted on all of it. A number is used as it is."""
        x, y = checked_features(features, labels)
        candidates = (float(l2),) if isinstance(l2, int | float) else tuple(map(float, l2))
        if not candidates or min(candidates) <= 0:
            raise UserError(f"l2 {l2!r}: give one positive penalty or a list of them")
        counts = torch.bincount(y, minlength=len(EMOTIONS))
        needed = folds if len(candidates) > 1 else 1
        if len(candidates) > 1 and folds < 2:
            raise UserError(f"folds ({folds}) must be at least 2 to choose among l2 "
                            f"{list(candidates)}; or give one l2")
        short = [emotion for emotion, n in zip(EMOTIONS, counts.tolist(), strict=True)
                 if n < needed]
        if short:
            raise UserError(f"too few training dialogues for {', '.join(short)}: the probe "
                            f"needs at least {needed} per emotion; add dialogues, or give one "
                            "l2 to skip cross-validation")
        cross_validated: tuple[float, ...] = ()
        if len(candidates) > 1:
            chosen, cross_validated = _cross_validate(x, y, candidates, folds, seed)
        else:
            chosen = torch.full((x.shape[1],), candidates[0], dtype=torch.float64)
        mean, std = _standardisation(x)
        standardised = _standardised(x, mean, std)
        weight, bias = _fit_logistic(standardised, y, chosen)
        probe = cls(weight=weight, bias=bias, mean=mean, std=std,
                    l2=tuple(chosen.tolist()), l2_candidates=candidates, folds=folds,
                    seed=seed, train_accuracy=(), cross_validated_accuracy=cross_validated)
        return replace(probe, train_accuracy=_accuracy(probe.correct(features, y)))

    def predict(self, features: torch.Tensor) -> np.ndarray:
        """The emotion index each layer's probe names, (N, layers) int64."""
        standardised = _standardised(self._checked_shape(features), self.mean, self.std)
        return _logits(standardised, self.weight, self.bias).argmax(-1).T.numpy()

    def correct(self, features: torch.Tensor,
                labels: torch.Tensor | Sequence[int]) -> np.ndarray:
        """Whether each layer's probe names each dialogue's emotion, (N, layers) bool."""
        _, y = checked_features(features, labels)
        correct: np.ndarray = self.predict(features) == y.numpy()[:, None]
        return correct

    def with_held_out(self, features: torch.Tensor,
                      labels: torch.Tensor | Sequence[int]) -> Probe:
        """This probe with its accuracy per layer on held-out ``features`` recorded."""
        return replace(self, held_out_accuracy=_accuracy(self.correct(features, labels)))

    def description(self) -> dict[str, Any]:
        """What ``probe.json`` holds: everything but the tensors."""
        return {"format": PROBE_FORMAT, "kind": "probe", "features": FEATURES,
                "emotions": list(EMOTIONS), "layers": self.n_layers,
                "hidden": int(self.weight.shape[1]), "l2": list(self.l2),
                "l2_candidates": list(self.l2_candidates), "folds": self.folds,
                "seed": self.seed, "train_accuracy": list(self.train_accuracy),
                "cross_validated_accuracy": list(self.cross_validated_accuracy),
                "held_out_accuracy": list(self.held_out_accuracy)}

    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
        """Tensors to ``path`` (safetensors, e.g. ``probe.safetensors``) and the description,
        with ``metadata`` (say the model's name), as readable JSON beside it (``probe.json``);
        both written atomically."""
        save_tensors(path, {"weight": self.weight, "bias": self.bias, "mean": self.mean,
                            "std": self.std}, {**self.description(), **(metadata or {})})

    @classmethod
    def load(cls, path: str | Path) -> Probe:
        header, tensors = load_tensors(path, "a probe file", "that Probe.save writes")
        if header.get("kind") != "probe" or header.get("format") != PROBE_FORMAT:
            raise UserError(f"{path}: not a probe file of format {PROBE_FORMAT}; fit and save "
                            "the probe again")

        def numbers(key: str) -> tuple[float, ...]:
            return tuple(float(v) for v in json.loads(header[key]))

        return cls(weight=tensors["weight"], bias=tensors["bias"], mean=tensors["mean"],
                   std=tensors["std"], l2=numbers("l2"), l2_candidates=numbers("l2_candidates"),
                   folds=int(header["folds"]), seed=int(header["seed"]),
                   train_accuracy=numbers("train_accuracy"),
                   cross_validated_accuracy=numbers("cross_validated_accuracy"),
                   held_out_accuracy=numbers("held_out_accuracy"))

    def _checked_shape(self, features: torch.Tensor) -> torch.Tensor:
        expected = tuple(self.weight.shape[:2])
        if features.ndim != 3 or tuple(features.shape[1:]) != expected:
            raise UserError(f"features of shape {tuple(features.shape)}, but this probe reads "
                            f"(N, {expected[0]}, {expected[1]}); were they computed on "
                            "another model?")
        return features.to(torch.float64)


def probe_outcomes(loaded: LoadedModel, probe: Probe, records: Sequence[Record],
                   ablation: Intervention | None = None, batch_size: int = 16,
                   progress: bool = False) -> np.ndarray:
    """(N, layers) bool: whether ``probe``, trained without any ablation, names each of
    ``records``' emotion at each residual layer while ``ablation`` acts on the dialogue being
    read (``None``: unablated). A set carries emotion information where it lowers this, at
    :func:`layers_after` it, more than random sets do.

    >>> probe_outcomes(loaded, probe, held_out, Ablation.of({12: [7]}))  # doctest: +SKIP
    """
    features = residual_features(loaded, records, ablation, batch_size, progress)
    return probe.correct(features, emotion_labels(records))


def checked_features(features: torch.Tensor, labels: torch.Tensor | Sequence[int],
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``features`` (N, layers, hidden) as float64 and ``labels`` as (N,) emotion indices,
    or a UserError saying what does not fit."""
    y = torch.as_tensor(labels, dtype=torch.long).flatten()
    if features.ndim != 3 or features.shape[0] != len(y):
        raise UserError(f"features of shape {tuple(features.shape)} and {len(y)} labels: give "
                        "(N, layers, hidden) features and one label per dialogue")
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(EMOTIONS):
        raise UserError(f"labels range {int(y.min())}..{int(y.max())}: give emotion indices "
                        f"0..{len(EMOTIONS) - 1} (emotion_labels(records))")
    return features.to(torch.float64), y


def _standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer and feature, the mean and standard deviation over the dialogues; a constant
    feature keeps std 1 (it carries nothing, and must not divide by 0)."""
    mean = x.mean(0)
    std = x.std(0, correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _standardised(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(layers, N, hidden): the layout every layer's regression reads."""
    return ((x - mean) / std).transpose(0, 1).contiguous()


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: torch.Tensor,
                  start: tuple[torch.Tensor, torch.Tensor] | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (layers, hidden, emotions) and biases (layers, emotions) minimising, for each
    layer's penalty ``l2`` (layers,), the mean cross-entropy plus ``l2 / 2 * |W|^2``, from
    ``start`` (zeros by default).

    The layers' problems are independent and each is strictly convex, so one LBFGS run on
    their sum (deterministic on a CPU) finds every optimum at once. With fewer dialogues than
    features, the optimum lies in the span of the dialogues' features (the loss's gradient
    and the penalty's do): the fit runs in that basis, exactly and far faster."""
    if x.shape[1] < x.shape[2]:
        _, _, basis = torch.linalg.svd(x, full_matrices=False)  # (layers, N, hidden)
        reduced_start = None if start is None else (basis @ start[0], start[1])
        weight, bias = _fit_logistic(x @ basis.transpose(1, 2), y, l2, reduced_start)
        return basis.transpose(1, 2) @ weight, bias
    layers, hidden = x.shape[0], x.shape[2]
    weight = (torch.zeros((layers, hidden, len(EMOTIONS)), dtype=torch.float64)
              if start is None else start[0].clone()).requires_grad_()
    bias = (torch.zeros((layers, len(EMOTIONS)), dtype=torch.float64)
            if start is None else start[1].clone()).requires_grad_()
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=MAX_ITERATIONS, history_size=20,
                                  tolerance_grad=GRADIENT_TOLERANCE, tolerance_change=0.0,
                                  line_search_fn="strong_wolfe")
    target = y.expand(layers, -1).unsqueeze(-1)

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        log_probabilities = torch.log_softmax(_logits(x, weight, bias), -1)
        cross_entropy = -log_probabilities.gather(-1, target).squeeze(-1).mean(-1)
        loss = (cross_entropy + l2 / 2 * weight.square().sum((-2, -1))).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        optimizer.step(objective)  # type: ignore[no-untyped-call]
    return weight.detach(), bias.detach()


def _logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (layers, N, hidden), weight (layers, hidden, emotions), bias (layers, emotions):
    (layers, N, emotions)."""
    return torch.bmm(x, weight) + bias.unsqueeze(-2)


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """(N,) fold index of each dialogue: each emotion's dialogues in a seeded order, dealt out
    in turn, so every fold holds about the same share of each emotion.

    >>> stratified_folds(torch.tensor([0, 0, 0, 1, 1, 1]), 3, seed=0).sort().values.tolist()
    [0, 0, 1, 1, 2, 2]
    """
    generator = torch.Generator().manual_seed(seed)
    fold = torch.zeros(len(labels), dtype=torch.long)
    for emotion in range(len(EMOTIONS)):
        members = torch.nonzero(labels == emotion).flatten()
        shuffled = members[torch.randperm(len(members), generator=generator)]
        fold[shuffled] = torch.arange(len(members)) % folds
    return fold


def _cross_validate(x: torch.Tensor, y: torch.Tensor, candidates: tuple[float, ...],
                    folds: int, seed: int) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Each layer's penalty (layers,) with the lowest cross-entropy on the left-out folds,
    and the left-out accuracy per layer at that penalty. Each fold is standardised with its
    own training part's statistics, as the final probe is with all the training data's.
    The penalties are fitted strongest first, each starting from the previous optimum (a
    regularisation path): a weak penalty alone takes LBFGS many more steps."""
    fold = stratified_folds(y, folds, seed)
    layers = x.shape[1]
    path = sorted(range(len(candidates)), key=lambda i: -candidates[i])
    cross_entropy = torch.zeros((len(candidates), layers), dtype=torch.float64)
    correct = torch.zeros((len(candidates), layers), dtype=torch.float64)
    for left_out in range(folds):
        train, test = fold != left_out, fold == left_out
        mean, std = _standardisation(x[train])
        train_x, test_x = _standardised(x[train], mean, std), _standardised(x[test], mean, std)
        start = None
        for candidate in path:
            l2 = torch.full((layers,), candidates[candidate], dtype=torch.float64)
            start = _fit_logistic(train_x, y[train], l2, start)
            logits = _logits(test_x, *start)
            target = y[test].expand(layers, -1).unsqueeze(-1)
            cross_entropy[candidate] -= (torch.log_softmax(logits, -1).gather(-1, target)
                                         .squeeze(-1).sum(-1))
            correct[candidate] += (logits.argmax(-1) == y[test]).sum(-1)
    best = cross_entropy.argmin(0)
    chosen = torch.tensor(candidates, dtype=torch.float64)[best]
    accuracy = correct.gather(0, best.unsqueeze(0)).squeeze(0) / len(y)
    return chosen, tuple(accuracy.tolist())


def _accuracy(correct: np.ndarray) -> tuple[float, ...]:
    return tuple(float(a) for a in correct.mean(0))
