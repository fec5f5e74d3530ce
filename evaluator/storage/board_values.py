"""The numbers a leaderboard ranks on, kept beside a run's metrics documents (Run.board_values).

A board of 10,000 runs read those numbers out of each run's metrics documents, and PostgreSQL
then detoasts and walks every document (per-class tables, confusion matrices, intervals) to find
two or three numbers: most of a cold board's time. This compact copy holds only the flat metrics
of both documents, so the board reads a few bytes per run (evaluator.standings).

NOTE: every write of Run.metrics / Run.private_metrics writes this too (Run.save, runs.finish,
rescoring, migration 0012); a row without it (NULL) is read from its documents.
"""

from __future__ import annotations

import math


def flat(document: dict | None) -> dict[str, float]:
    """A document's metrics that a board can rank: finite numbers (a boolean as 0 or 1, as standings.value reads)."""
    found = (document or {}).get("metrics") or {}
    return {name: float(value) for name, value in found.items()
            if isinstance(value, (int, float)) and math.isfinite(value)}


def of(metrics: dict | None, private_metrics: dict | None) -> dict | None:
    """The compact values of a run's documents: `public` from metrics, `private` from the private part when it
    has one, else from metrics (what a private board reads); None for a run without documents."""
    if metrics is None and private_metrics is None:
        return None
    return {"public": flat(metrics), "private": flat(private_metrics or metrics)}
