"""Continual forgetting (GS-LoRA): accuracy on this task's, the remaining and the earlier-forgotten classes."""

from __future__ import annotations

from unlearn.metrics.base import Evaluation, metric


@metric("continual", needs=("test_task", "test_remaining", "task-start"),
        produces=("Acc_f", "Acc_r", "Acc_o", "Drop", "H"))
def continual(ev: Evaluation) -> dict[str, float]:
    """After one task of a continual sequence, on test images (in %):

    - Acc_f: accuracy on the classes this task forgets; Acc_r: on the classes no task has forgotten
      yet; Acc_o: on the classes earlier tasks forgot (absent after the first task);
    - Drop = max(0, Acc_f(model at the task's start) − Acc_f), floored at 0 as GS-LoRA's H implies (a
      harmonic mean of a negative "forgetting" is meaningless: a task whose Acc_f rose forgot nothing, so
      Drop and H are 0); H = 2·Drop·Acc_r / (Drop + Acc_r), the harmonic mean of forgetting and keeping
      (0 when both are 0).

    Added by the harness to every cell of a continual forget set, whatever the spec lists.
    """
    start = ev.need("task-start")
    acc_f, acc_r = ev["test_task"].accuracy, ev["test_remaining"].accuracy
    drop = max(0.0, start["test_task"].accuracy - acc_f)
    out = {"Acc_f": acc_f, "Acc_r": acc_r, "Drop": drop,
           "H": 2 * drop * acc_r / (drop + acc_r) if drop + acc_r > 0 else 0.0}
    if ev.has("test_earlier"):
        out["Acc_o"] = ev["test_earlier"].accuracy
    return out
