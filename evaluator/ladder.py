"""The Ladder (Blum & Hardt, ICML 2015), parameter-free: a public score adaptive submissions cannot overfit.

A participant's public score changes only when a new run beats their current best by more than the
standard error of the difference between the two runs on the public rows (s / sqrt(n), s the sample
standard deviation of the per-row loss differences; evaluator.significance gives it). The score is then
set to the new run's value rounded to a multiple of 1/n, and shown at the threshold's precision
(its first significant decimal, never finer than disclosure's). Otherwise the score stays.

The sequence is a pure function of the participant's runs in the order the board received them (their
finish order: a run that finishes late cannot rewrite an earlier score), so nothing is stored: the board
recomputes it, and the same runs always give the same public scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from evaluator.disclosure import PARTICIPANT_DECIMALS


@dataclasses.dataclass(frozen=True)
class Step:
    """The public score after one run: `score` (exact), `shown` at `decimals`, the best run so far."""

    run_id: str
    value: float  # the run's own public value (never shown to a participant)
    score: float
    best_run_id: str
    accepted: bool
    threshold: float
    decimals: int

    @property
    def shown(self) -> float:
        return round(self.score, self.decimals)


def decimals_for(threshold: float) -> int:
    """The decimals a score is shown at: the threshold's first significant one, at most PARTICIPANT_DECIMALS."""
    if not threshold > 0 or not math.isfinite(threshold):
        return PARTICIPANT_DECIMALS
    return max(0, min(PARTICIPANT_DECIMALS, math.ceil(-math.log10(threshold))))


def on_grid(value: float, n_rows: int) -> float:
    """[value]_{1/n}: the nearest multiple of 1/n (the paper's rounding)."""
    return round(value * n_rows) / n_rows if n_rows > 0 else value


def steps(runs: Sequence[tuple[str, float]], *, maximize: bool, n_rows: int,
          threshold: Callable[[str, str], float]) -> list[Step]:
    """The public score after each of (run id, public value), in the order received.

    `threshold(run_id, best_run_id)` is the standard error of their difference; it is asked only when
    a run's value beats the current score at all (the rest cannot move it), so few runs are read.
    The first run sets the score; its precision is 1/sqrt(n), the scale of any score's error.
    """
    out: list[Step] = []
    current: Step | None = None
    for run_id, value in runs:
        if current is None:
            first = 1 / math.sqrt(n_rows) if n_rows > 0 else 0.0
            current = Step(run_id, value, on_grid(value, n_rows), run_id, True, first, decimals_for(first))
            out.append(current)
            continue
        gain = value - current.score if maximize else current.score - value
        if gain > 0:
            step = threshold(run_id, current.best_run_id)
            if gain > step:
                current = Step(run_id, value, on_grid(value, n_rows), run_id, True, step, decimals_for(step))
                out.append(current)
                continue
        out.append(dataclasses.replace(current, run_id=run_id, value=value, accepted=False))
    return out
