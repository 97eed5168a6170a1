"""The report's causal-validation section: every control set with corrected tests, the
dose-response curves, and steering.

Kept apart from :mod:`emoneuron.reporting.report` (which lays out the page) so each stays short; the
figures go through the page's own renderer, passed in as ``render``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from emoneuron.causal.inference.significance import holm
from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.figures import subplots
from emoneuron.reporting.html import table
from emoneuron.reporting.results import RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Render = Callable[[str, str, str, Callable[[], "Figure"]], str]
CONTROL_NAMES = {"random": "random, layer-matched", "frequency": "random, frequency-matched",
                 "least": "least selective", "shuffled": "shuffled-label null"}


def _pct(x: float) -> str:
    return "-" if pd.isna(x) else f"{100 * x:.1f}%"


def _p(x: float) -> str:
    return "-" if pd.isna(x) else "< 0.001" if x < 0.001 else f"{x:.3f}"


def near_chance_emotions(effects: pd.DataFrame) -> set[str]:
    """Emotions whose baseline is too close to chance for a drop to show (``near_chance`` on
    the self rows of effects.csv; none for runs written before that column)."""
    if "near_chance" not in effects:
        return set()
    own = effects[effects.masked_emotion == effects.eval_emotion]
    return set(own.masked_emotion[own.near_chance.astype(str) == "True"])


def titled(emotion: str, near_chance: set[str]) -> str:
    """An emotion's name for a figure panel, marked when its baseline is near chance."""
    return f"{emotion} (near chance)" if emotion in near_chance else emotion


def controls_table(run: RunResults, specificity: pd.DataFrame, near: set[str]) -> str:
    """Per emotion: masked and control accuracy with intervals, Holm-corrected exact tests,
    the specificity index, a flag where masking raised accuracy, and what a null result on
    the emotion can mean (its minimum detectable drop, or that its baseline is near chance)."""
    effects, ablation = run.every_control, run.ablation
    own = effects[effects.masked_emotion == effects.eval_emotion]
    by_emotion = specificity.set_index("masked_emotion")
    masks = ablation[ablation.condition == "mask"].set_index(["masked_emotion", "eval_emotion"])
    sets = [c for c in CONTROL_NAMES if c in set(own.control_set)]
    rows, flagged = [], []
    for emotion in EMOTIONS:
        by_set = own[own.masked_emotion == emotion].set_index("control_set")
        if by_set.empty:
            continue
        first = by_set.iloc[0]
        mask = masks.loc[(emotion, emotion)]
        spec = by_emotion.loc[emotion]
        if bool(first["improves"]):
            flagged.append(f"{emotion} ({_pct(first['baseline'])} -> {_pct(first['masked'])})")
        rows.append([
            titled(emotion, near), str(int(first["n"])), _pct(first["baseline"]),
            f"{_pct(mask['accuracy'])} [{_pct(mask['ci_low'])}, {_pct(mask['ci_high'])}]",
            _p(first["p_mcnemar_baseline_holm"]),
            *(f"{_pct(by_set.loc[s, 'control'])} (p {_p(by_set.loc[s, 'p_exact_control_holm'])})"
              if s in by_set.index else "-" for s in sets),
            f"{100 * spec['specificity']:+.1f} [{100 * spec['ci_low']:+.1f}, "
            f"{100 * spec['ci_high']:+.1f}]",
            "RISES under masking" if bool(first["improves"]) else "",
            str(first.get("power_note", "-"))])
    rows_html = table(["emotion", "n", "baseline", "masked [95% CI]",
                         "p vs baseline (McNemar, Holm)",
                         *(f"{CONTROL_NAMES[s]} (p, Holm)" for s in sets),
                         "specificity, points [95% CI]", "flag", "power"], rows)
    flag_text = (f"<p><b>Masking raised accuracy beyond its interval for: "
                 f"{escape(', '.join(flagged))}.</b> A rise is not an effect of removing "
                 "information the model needs; look at the confusion matrices "
                 "(confusion.csv) to see which labels it stopped predicting.</p>"
                 if flagged else "<p>No emotion's accuracy rose beyond its interval when its "
                 "neurons were removed.</p>")
    return (f"{flag_text}{rows_html}<p class=\"note\">Masked: Wilson 95% interval. p vs "
            "baseline: McNemar's exact test on the paired dialogues; p vs a control: exact "
            "permutation test that the emotion's set is one more control set (per dialogue, "
            "which of the masked and the k control outcomes is the masked one is permuted; "
            "McNemar's test when there is one seed); both Holm-corrected across the six "
            "emotions. Specificity: the drop on the emotion itself minus the mean drop on the "
            "other five (stratified bootstrap interval). Power: the smallest drop McNemar's "
            "test would find with 80% power at the Holm level 0.05/6 if masking only lost "
            "right answers; an emotion whose baseline's Wilson lower bound is at or below "
            "chance (1/6) cannot show a drop.</p>")


def _fig_dose(dose: pd.DataFrame, variable: str, label: str, near: set[str]) -> Figure:
    emotions = [e for e in EMOTIONS if e in set(dose.masked_emotion)]
    fig, axes = subplots(1, len(emotions), figsize=(2.6 * len(emotions), 3),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, emotion in zip(axes[0], emotions, strict=True):
        part = dose[(dose.masked_emotion == emotion) & (dose.variable == variable)]
        for condition, name in (("mask", "emotion neurons"), ("control", "random neurons")):
            line = part[part.condition == condition].sort_values("value")
            ax.plot(line.value, 100 * line.accuracy, marker="o", label=name)
            ax.fill_between(line.value, 100 * line.ci_low, 100 * line.ci_high, alpha=0.15)
        ax.set_title(titled(emotion, near))
        ax.set_xlabel(label)
        ax.set_ylim(0, 105)
    axes[0][0].set_ylabel("accuracy on the emotion (%)")
    axes[0][0].legend(fontsize=7)
    return fig


def _fig_confusion(confusion: pd.DataFrame) -> Figure:
    panels = [("baseline", "")] + [("mask", e) for e in EMOTIONS]
    fig, axes = subplots(1, len(panels), figsize=(2.4 * len(panels), 2.9),
                             layout="constrained", squeeze=False)
    image = None
    for ax, (condition, masked) in zip(axes[0], panels, strict=True):
        part = confusion[(confusion.condition == condition)
                         & (confusion.masked_emotion.fillna("") == masked)]
        counts = part.pivot_table(index="true_emotion", columns="predicted_emotion",
                                 values="count").reindex(index=EMOTIONS, columns=EMOTIONS)
        shares = counts.div(counts.sum(axis=1).clip(lower=1), axis=0).to_numpy()
        image = ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
        ax.set_title("baseline" if condition == "baseline" else f"{masked} removed", fontsize=9)
        ax.set_xticks(range(len(EMOTIONS)), [e[:3] for e in EMOTIONS], fontsize=7)
        ax.set_yticks(range(len(EMOTIONS)), [e[:3] for e in EMOTIONS], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true emotion")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="share of the true emotion's dialogues")
    return fig


def confusion_figure(confusion: pd.DataFrame | None, render: Render) -> str:
    if confusion is None:
        return ""
    return render("confusion", "Confusion matrices before and after masking",
                  "Rows: true emotion; columns: predicted emotion; each row sums to 1. The "
                  "first panel is the untouched model, each other panel the model with one "
                  "emotion's neurons removed. Where accuracy rises under masking, this shows "
                  "which label the model stopped over-predicting.",
                  partial(_fig_confusion, confusion))


def dose_figures(dose: pd.DataFrame | None, near: set[str], render: Render) -> str:
    if dose is None:
        return ""
    html = ""
    if (dose.variable == "strength").any():
        html += render("dose_strength", "Dose-response: accuracy against activation strength",
                       "Accuracy on each emotion when its neurons' activations are multiplied "
                       "by the strength on the x axis (0: removed, 1: untouched, above 1: "
                       "amplified), beside a random layer-matched set treated alike. Bands: "
                       "95% Wilson interval.",
                       partial(_fig_dose, dose, "strength", "strength", near))
    if (dose.variable == "proportion").any():
        html += render("dose_proportion", "Dose-response: accuracy against share removed",
                       "Accuracy on each emotion when its top-ranked neurons are removed up to "
                       "the share on the x axis, beside a random layer-matched set of the same "
                       "size. Bands: 95% Wilson interval.",
                       partial(_fig_dose, dose, "proportion", "share of its neurons removed",
                               near))
    return html


STEERING_ALPHA = 0.05  # the family-wise level of the steering verdicts (Holm, six emotions)


def steering_verdicts(steering: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Per emotion, the Holm-adjusted p of McNemar's exact test of its amplified neurons
    against the matched random ones (across the emotions steered) and the verdict: "toward it
    beyond random neurons" only where that adjusted p is below 0.05 and its neurons' share
    classified as the emotion is the larger. Empty when no emotion was steered with a control.

    >>> result = {"emotion": {"classified_as_target": 0.9}, "random": {"classified_as_target": 0.1}}
    >>> verdicts = steering_verdicts({"emotions": {
    ...     "anger": {**result, "p_mcnemar_emotion_vs_random": 0.004},
    ...     "fear": {**result, "p_mcnemar_emotion_vs_random": 0.03}}})
    >>> verdicts["anger"], verdicts["fear"][0]
    ((0.008, 'toward it beyond random neurons'), 0.03)
    """
    controlled = {emotion: result for emotion, result in steering["emotions"].items()
                  if "random" in result and "p_mcnemar_emotion_vs_random" in result}
    adjusted = holm([float(r["p_mcnemar_emotion_vs_random"]) for r in controlled.values()])
    verdicts = {}
    for (emotion, result), p_holm in zip(controlled.items(), adjusted, strict=True):
        toward = (result["emotion"]["classified_as_target"]
                  > result["random"]["classified_as_target"])
        verdicts[emotion] = (p_holm, "toward it beyond random neurons"
                             if toward and p_holm < STEERING_ALPHA
                             else "not distinguishable from random neurons")
    return verdicts


def _steering_verdict_line(verdicts: dict[str, tuple[float, str]]) -> str:
    if not verdicts:
        return ('<p class="verdict">No verdict: steering has no control in this run (no '
                "random neurons were amplified to compare with).</p>")
    beyond = [e for e, (_, verdict) in verdicts.items() if verdict.startswith("toward")]
    return (f'<p class="verdict">Verdict (McNemar\'s exact test of its neurons against the '
            f"random ones, Holm across the {len(verdicts)} emotions, family-wise "
            f"{STEERING_ALPHA}): amplifying an emotion's neurons moves the continuations "
            f"toward it beyond random neurons for {', '.join(beyond) if beyond else 'no emotion'}"
            ".</p>")


def steering_html(steering: dict[str, Any] | None) -> str:
    if steering is None:
        return "<p>No steering in this run (run with --steer).</p>"
    verdicts = steering_verdicts(steering)
    rows, samples = [], []
    names = [s for s in ("none", "emotion", "random")
             if any(s in result for result in steering["emotions"].values())]
    for emotion, result in steering["emotions"].items():
        p_holm, verdict = verdicts.get(emotion, (float("nan"), "no control: no verdict"))
        rows.append([emotion, str(result["n_neurons"]),
                     *(f"{_pct(result[s]['classified_as_target'])} "
                       f"[{_pct(result[s]['classified_ci_low'])}, "
                       f"{_pct(result[s]['classified_ci_high'])}]" if s in result else "-"
                       for s in ("none", "emotion", "random")),
                     _p(p_holm), verdict,
                     *(f"{result[s]['lexicon_target_per_continuation']:.2f}" if s in result
                       else "-" for s in ("none", "emotion", "random"))])
        examples = "".join(
            f"<tr><td>{escape(name)}</td><td>{escape(result[name]['continuations'][k])}</td></tr>"
            for k in range(2) for name in names if name in result)
        samples.append(f"<h4>{escape(emotion)}</h4><table><tbody>{examples}</tbody></table>")
    rows_html = table(["emotion", "neurons", "classified as it [95% CI]: untouched",
                       f"its neurons x{steering['strength']:g}", "random neurons",
                       "p its vs random (McNemar, Holm)", "verdict", "its words: untouched",
                       "its neurons", "random neurons"], rows)
    return (f"<p>The model continues {len(steering['dialogues'])} neutral dialogues (greedy, "
            f"{steering['new_tokens']} new tokens) untouched, with one emotion's neurons "
            f"amplified x{steering['strength']:g}, and with as many random neurons in the same "
            "layers amplified alike. Each continuation is classified by the same few-shot "
            "label-probability classifier and its words of that emotion are counted with the "
            "lexicon. Shares classified as the emotion carry Wilson 95% intervals; McNemar's "
            "exact test compares its neurons with the random ones on the same dialogues, its "
            f"p-values Holm-adjusted across the emotions.</p>"
            f"{_steering_verdict_line(verdicts)}{rows_html}"
            f"<h3>Sample continuations</h3>{''.join(samples)}")
