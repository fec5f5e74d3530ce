"""Field readers for request bodies: each refusal is ValidationFailed naming the field."""

from __future__ import annotations

from typing import Any, Iterable

from evaluator.errors import ValidationFailed
from evaluator.storage.layout import is_slug

_MISSING = object()


def _get(body: dict, field: str, default: Any) -> Any:
    value = body.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise ValidationFailed(f"'{field}' is required", field=field)
        return default
    return value


def slug(body: dict, field: str, default: Any = _MISSING) -> str:
    value = _get(body, field, default)
    if not is_slug(value):
        raise ValidationFailed(
            f"'{field}' must be 1-100 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
            field=field,
        )
    return value


def text(body: dict, field: str, default: Any = _MISSING, *, max_length: int = 500) -> str:
    value = _get(body, field, default)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ValidationFailed(f"'{field}' must be a non-empty string of at most {max_length} characters", field=field)
    return value


def choice(body: dict, field: str, options: Iterable[str], default: Any = _MISSING) -> str:
    options = list(options)
    value = _get(body, field, default)
    if value not in options:
        raise ValidationFailed(f"'{field}' must be one of {options}, not {value!r}", field=field)
    return value


def integer(body: dict, field: str, default: Any = _MISSING, *, minimum: int = 0,
            maximum: int | None = None) -> int | None:
    value = _get(body, field, default)
    if value is None:
        return value
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise ValidationFailed(f"'{field}' must be an integer at least {minimum}{bound}", field=field)
    return value


def number(body: dict, field: str, default: Any = _MISSING, *, minimum: float = 0.0) -> float:
    value = _get(body, field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= minimum:
        raise ValidationFailed(f"'{field}' must be a number above {minimum}", field=field)
    return float(value)


def string_list(body: dict, field: str, default: Any = _MISSING, *, allowed: Iterable[str] | None = None) -> list[str]:
    value = _get(body, field, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"'{field}' must be a list of strings", field=field)
    if allowed is not None:
        allowed = set(allowed)
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise ValidationFailed(f"'{field}' has unknown values {unknown}; allowed: {sorted(allowed)}", field=field)
    return value


def mapping(body: dict, field: str, default: Any = _MISSING) -> dict:
    value = _get(body, field, default)
    if not isinstance(value, dict):
        raise ValidationFailed(f"'{field}' must be an object", field=field)
    return value
