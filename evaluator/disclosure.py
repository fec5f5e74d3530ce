"""What precision of a metric a participant is shown: enough to rank, too little to encode rows.

A participant controls every row's prediction, so an exact metric value is a channel: with
probabilities chosen so that each row adds a distinct power of two to the log loss, one
submission's exact `log_loss` gave back 40 of 40 binary labels. Rounding every figure a
participant reads to a fixed number of decimals bounds that channel to a few bits per metric per
submission (the quota and the private split bound the rest); managers see exact values.
"""

from __future__ import annotations

import math
from typing import Any

# NOTE: 4 decimals is below every interval a test set of up to ~10^6 rows supports (a 95% CI on
# accuracy is about +-1/sqrt(n)), so ranks that are meaningful survive the rounding.
PARTICIPANT_DECIMALS = 4


def coarsen(value: Any, decimals: int = PARTICIPANT_DECIMALS) -> Any:
    """Return a copy of a JSON value with every float rounded to `decimals` places."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return round(value, decimals) if math.isfinite(value) else value
    if isinstance(value, dict):
        return {key: coarsen(item, decimals) for key, item in value.items()}
    if isinstance(value, list):
        return [coarsen(item, decimals) for item in value]
    return value
