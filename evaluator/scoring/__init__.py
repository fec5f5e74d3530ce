"""Metrics equal to scikit-learn's, streamed over files larger than memory; pure.

`score_files` is the entry point; see `pipeline` for the flow and `document` for metrics.json.
"""

from __future__ import annotations

from evaluator.scoring.document import default_primary_metric, direction, metric_names, validate_metrics_document
from evaluator.scoring.files import DEFAULT_CHUNK_ROWS, score_files

__all__ = ["DEFAULT_CHUNK_ROWS", "default_primary_metric", "direction", "metric_names", "score_files",
           "validate_metrics_document"]
