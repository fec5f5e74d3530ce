"""The metrics.json document: metric directions, defaults, assembly and schema validation."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import json
import math

import evaluator

SCHEMA_VERSION = 1
SCORING_VERSION = "1.0"

_MINIMIZE = {"log_loss", "mae", "mse", "rmse", "median_absolute_error", "max_error"}
_MAXIMIZE = {"accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
             "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc", "r2", "explained_variance"}
_DEFAULT_PRIMARY = {"classification": "accuracy", "regression": "rmse"}
_METRIC_NAMES = {
    "classification": ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                       "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc", "log_loss"),
    "regression": ("mae", "mse", "rmse", "r2", "median_absolute_error", "max_error", "explained_variance"),
}


def direction(metric_name: str) -> str:
    """Return "maximize" or "minimize" for a metric name."""
    if metric_name in _MAXIMIZE:
        return "maximize"
    if metric_name in _MINIMIZE:
        return "minimize"
    raise ValueError(f"unknown metric {metric_name!r}")


def metric_names(task: str) -> tuple[str, ...]:
    """Return the metrics a benchmark may choose for a task, in the order metrics.json lists them."""
    try:
        return _METRIC_NAMES[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(_METRIC_NAMES)}") from None


def default_primary_metric(task: str) -> str:
    """Return the metric a benchmark ranks by when it names none."""
    try:
        return _DEFAULT_PRIMARY[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(_DEFAULT_PRIMARY)}") from None


def implementation() -> dict[str, str]:
    """Name the code whose definitions produced the values."""
    return {
        "evaluator": evaluator.__version__,
        "scoring_version": SCORING_VERSION,
        "scikit_learn": importlib.metadata.version("scikit-learn"),
        "numpy": importlib.metadata.version("numpy"),
        "pyarrow": importlib.metadata.version("pyarrow"),
    }


@functools.cache
def metrics_schema() -> dict:
    """Load the JSON Schema shipped as package data."""
    text = importlib.resources.files("evaluator").joinpath("schemas/metrics.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_metrics_document(doc: dict) -> None:
    """Raise ValueError naming the first place where `doc` breaks the schema."""
    errors = list(_errors(doc, metrics_schema(), "$"))
    if errors:
        raise ValueError("metrics document does not match metrics.schema.json: " + "; ".join(errors[:5]))
    json.dumps(doc, allow_nan=False)  # NOTE: NaN and infinity are not JSON


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _errors(value, schema: dict, where: str):
    """Yield violations of the JSON Schema subset metrics.schema.json uses."""
    if "const" in schema and value != schema["const"]:
        yield f"{where} must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where} must be one of {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            yield f"{where} must be {' or '.join(types)}, got {value!r:.60}"
            return
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        yield f"{where} must be >= {schema['minimum']}"
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        yield f"{where} must be <= {schema['maximum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                yield f"{where} lacks {key!r}"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                yield from _errors(item, properties[key], f"{where}.{key}")
            elif extra is False:
                yield f"{where} has unexpected key {key!r}"
            elif isinstance(extra, dict):
                yield from _errors(item, extra, f"{where}[{key!r}]")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _errors(item, schema["items"], f"{where}[{i}]")
