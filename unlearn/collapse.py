"""Collapse: a run that kept too little of what the original model could do on the retain data.

Divergence to NaN fails a cell; a run that ends with finite but ruined weights used to be
recorded as `ok` like any other (issue 24: finetune on a corrective set ended at RA 17.8
and TA 10.0; NegGrad+ on a class set at RA 10.8). A finished run is *collapsed* when its
retain score is below COLLAPSE_FRACTION of the original model's on the same cell.

The retain score is the first of RETAIN_KEYS a record has: RA (accuracy on D_r, every
classifier and the continual sequences, after the last task) or Acc-r (the judge's accuracy
on generated samples of the retained classes). The language kind has neither (its other-task
accuracy is two-choice, chance 50), so its records are never called collapsed.

A collapsed run stays in the means and the paired tests: dropping it would reward a method
for failing. The tables count collapsed seeds next to the seeds that finished, and
`unlearn run` warns about each.
"""

from __future__ import annotations

from collections.abc import Mapping

COLLAPSE_FRACTION = 0.5
"""A run is collapsed when its retain score is below this fraction of the original model's."""
RETAIN_KEYS = ("RA", "Acc-r")
"""The retain scores, in order of preference."""
COLLAPSED_NOTE = (f"collapsed: a seed whose retain score (RA, or Acc-r for a generator) fell below "
                  f"{COLLAPSE_FRACTION:.0%} of the original model's; collapsed seeds stay in the means and tests "
                  "(dropping them would reward failing) and are counted in Seeds.")
"""The note under a table with collapsed seeds."""


def collapse(metrics: Mapping[str, float], original: Mapping[str, float]) -> str | None:
    """Why a run with these `metrics` collapsed against its cell's `original` model's metrics, or None when it did
    not (or when the records hold no retain score to judge by)."""
    key = next((k for k in RETAIN_KEYS if k in metrics and k in original), None)
    if key is None or original[key] <= 0:
        return None
    if metrics[key] < COLLAPSE_FRACTION * original[key]:
        return (f"{key} {metrics[key]:.1f} is below {COLLAPSE_FRACTION:.0%} of the original model's "
                f"{original[key]:.1f}")
    return None
