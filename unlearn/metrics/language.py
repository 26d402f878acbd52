"""The language kind's forgetting metrics ("Unforgettable Generalization in Language Models", Zhang et al. 2024).

A two-choice item is answered right when the true answer's summed log-likelihood beats the distractor's, so
chance is 50 %. With acc_before the original (pretrained) model's accuracy and acc_after the scored model's:

- forget gap = acc_after − 50 (points), and forget ratio = (acc_before − acc_after) / (acc_before − 50), both on
  the forget items (`Gap-f`, `Ratio-f`) and on the task's unseen test items (`Gap-h`, `Ratio-h`): a ratio of 1 is
  chance, 0 is no forgetting; a ratio is left out (the info says why) when acc_before is within 1 point of chance,
  where it is undefined;
- `Acc-o`, accuracy on the other tasks' test items (what is retained), and per other task T `Acc[T]` and
  `Ratio[T]`, the row of the cross-task matrix (`scripts/language.py` assembles it).

The paper reports accuracies as fractions; these are percent like every accuracy of the suite (ratios are
fractions).
"""

from __future__ import annotations

from unlearn.metrics.base import Evaluation, Scores, metric

CHANCE = 50.0
MIN_MARGIN = 1.0
"""A forget ratio needs the original at least this many points above chance."""


def forget_ratio(before: float, after: float) -> float | None:
    """(before − after) / (before − 50); None when `before` is within `MIN_MARGIN` points of chance."""
    if before - CHANCE < MIN_MARGIN:
        return None
    return (before - after) / (before - CHANCE)


@metric("lm-forgetting", needs=("forget", "test_forgotten", "original"), produces=("Acc-f", "Acc-h", "Gap-f", "Gap-h", "Ratio-f", "Ratio-h"))
def lm_forgetting(ev: Evaluation) -> Scores:
    """Accuracy, forget gap and forget ratio on the forget items (f) and on the task's held-out items (h)."""
    original: Evaluation = ev.need("original")
    values: dict[str, float] = {}
    info: dict[str, object] = {}
    for key, split in (("f", "forget"), ("h", "test_forgotten")):
        before, after = original[split].accuracy, ev[split].accuracy
        values[f"Acc-{key}"] = after
        values[f"Gap-{key}"] = after - CHANCE
        ratio = forget_ratio(before, after)
        if ratio is None:
            info[f"Ratio-{key}"] = f"undefined: the original's accuracy {before:.1f} is within {MIN_MARGIN} of chance"
        else:
            values[f"Ratio-{key}"] = ratio
        info[f"original_{split}_accuracy"] = before
    return Scores(values, info)


@metric("lm-tasks", needs=("test", "original", "language"), produces=("Acc-o",))
def lm_tasks(ev: Evaluation) -> Scores:
    """Accuracy on the other tasks' test items, overall (Acc-o) and per task, with each task's forget ratio."""
    cell = ev.need("language")
    original: Evaluation = ev.need("original")
    after, before = ev["test"], original["test"]
    right_after = (after.logits.argmax(1) == after.labels).float()
    right_before = (before.logits.argmax(1) == before.labels).float()
    values = {"Acc-o": 100.0 * float(right_after.mean())}
    undefined = []
    for task in sorted(set(cell.test_tasks)):
        rows = [n for n, name in enumerate(cell.test_tasks) if name == task]
        acc_after, acc_before = (100.0 * float(right[rows].mean()) for right in (right_after, right_before))
        values[f"Acc[{task}]"] = acc_after
        ratio = forget_ratio(acc_before, acc_after)
        if ratio is None:
            undefined.append(task)
        else:
            values[f"Ratio[{task}]"] = ratio
    return Scores(values, {"ratio_undefined": undefined} if undefined else {})
