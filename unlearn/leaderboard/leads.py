"""Where a row beats the oracle on a quality metric, and what Avg. Gap makes of that.

Avg. Gap is SalUn's mean of |value − oracle| over a benchmark's gap metrics, and the leaderboard keeps that
definition. On a quality metric, one that measures what the model should keep doing well, the absolute value
charges a model that does better than the oracle as if it did worse, and a lead can change the ranking without a
word (SFD's samples of the remaining classes are judged right 100 % of the time on digits-ddpm `class:3`, the
oracle's 91 %). So the tables say so: a cell whose mean beats the oracle's by more than the 95 % interval of the
paired differences (value − oracle of the same seed, at least two seeds) is marked, and a note under the table
gives the lead and the gap Avg. Gap counts for it.

The quality keys are RA and TA (a classifier's accuracy on the retained and test data) and Acc-r (the judge's
accuracy on samples of a generator's remaining classes): more is better for whoever uses the model, whatever the
oracle reaches. UA, the MIA scores and the depth attacks are not: there, ending beyond the oracle (forgetting more
than retraining does) is itself a tell-tale sign, so a gap is the right charge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unlearn.leaderboard.stats import TOLERANCE, interval_half_width

QUALITY_KEYS = ("RA", "TA", "Acc-r")
"""Gap metrics where more is better for the model's users whatever the oracle reaches."""
MARK = "‡"
"""What follows a marked cell."""


@dataclass(frozen=True)
class Lead:
    """A row's lead over the oracle in one column: the mean over seeds of value − oracle and its 95 % interval's
    half-width, the gap Avg. Gap counts for it (the mean of |value − oracle|) and what that adds to Avg. Gap."""

    column: str
    lead: float
    half: float
    gap: float
    share: float

    def note(self, method: str) -> str:
        return (f"{MARK} {method} beats the oracle on {self.column} by {self.lead:.2f} (paired 95 % interval "
                f"± {self.half:.2f}): Avg. Gap counts this as a gap of {self.gap:.2f}, adding {self.share:.2f} to its "
                "Avg. Gap.")


def leads(values: Mapping[str, Mapping[int, float]], oracle: Mapping[str, Mapping[int, float]],
          gap_keys: Sequence[str]) -> tuple[Lead, ...]:
    """The quality columns among `gap_keys` where `values` (per column, per seed) beat the oracle's of the same
    seeds by more than the 95 % interval of the paired differences (two seeds in common at least)."""
    out = []
    for column in gap_keys:
        if column not in QUALITY_KEYS:
            continue
        mine, reference = values.get(column, {}), oracle.get(column, {})
        diffs = np.array([v - reference[s] for s, v in mine.items() if s in reference], dtype=float)
        if len(diffs) < 2:
            continue
        lead, half = float(diffs.mean()), interval_half_width(diffs)
        if lead - half > TOLERANCE * max(1.0, abs(lead)):
            gap = float(np.abs(diffs).mean())
            out.append(Lead(column, lead, half, gap, gap / len(gap_keys)))
    return tuple(out)
