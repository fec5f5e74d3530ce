"""Classification labels: one kind per task (integer or string), small codes in first-seen order.

Predictions are hostile: a value that does not fit the labels' kind is refused with a sentence the
participant can act on, never cast into something else (NaN is not int64's minimum).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evaluator.errors import EvaluatorError, PredictionsInvalid

MAX_CLASSES = 1000
_INTEGER = re.compile(r"-?[0-9]+")  # NOTE: int() also takes " 5", "5_0" and other scripts' digits
_INT64_LIMIT = float(2**63)  # floats at or past this (either sign but -2**63 itself) are no int64


def label_kind(data_type: pa.DataType) -> str:
    """Return "int" or "str" for a labels column type (floats must hold whole numbers)."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_boolean(data_type):
        return "int"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "str"
    raise EvaluatorError(f"classification labels must be integers or strings, not {data_type}")


def _error(what: str) -> type[EvaluatorError]:
    return PredictionsInvalid if what == "predictions" else EvaluatorError


def normalize(array: pa.Array, kind: str, *, what: str) -> pa.Array:
    """Cast labels or predictions to int64 or string, refusing a mix (as scikit-learn does).

    Raises:
        PredictionsInvalid: predictions of another kind, non-finite, fractional or out of int64's range.
    """
    error = _error(what)
    data_type = array.type
    if pa.types.is_dictionary(data_type):
        array, data_type = array.cast(data_type.value_type), data_type.value_type
    if kind == "str":
        if not (pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_null(data_type)):
            raise error(f"{what} are {data_type} but the labels are strings (scikit-learn refuses a mix of "
                        "string and number labels); write the class names as strings")
        return array.cast(pa.large_string())
    if pa.types.is_boolean(data_type) or pa.types.is_null(data_type):
        return array.cast(pa.int64())
    if pa.types.is_integer(data_type):
        largest = pc.max(array).as_py() if pa.types.is_uint64(data_type) else None
        if largest is not None and largest >= 2**63:
            raise error(f"{what} hold integers past the int64 range; the labels' classes are int64 numbers")
        return array.cast(pa.int64())
    if pa.types.is_floating(data_type):
        return _whole_floats(array, what)
    raise error(f"{what} are {data_type} but the labels are integers; write the classes as integers")


def _whole_floats(array: pa.Array, what: str) -> pa.Array:
    """Cast floats that hold whole int64 numbers; refuse NaN, infinity, fractions and overflow."""
    error = _error(what)
    values = array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    valid = ~array.is_null().to_numpy(zero_copy_only=False) if array.null_count else np.ones(len(values), bool)
    values = values[valid]
    non_finite = int(np.count_nonzero(~np.isfinite(values)))
    if non_finite:
        raise error(f"{non_finite} {what} are NaN or infinite but the labels are integer classes; "
                    "predict a class for every row (for example the argmax of your scores)")
    if np.any(values != np.floor(values)):
        raise error(f"{what} hold non-integer numbers but the labels are integer classes")
    if np.any((values >= _INT64_LIMIT) | (values < -_INT64_LIMIT)):
        raise error(f"{what} hold numbers past the int64 range but the labels are integer classes")
    return pc.cast(array, pa.int64(), safe=False)


class LabelCodes:
    """Map each distinct label or prediction to a code, in first-seen order, within class limits.

    The labels and the predictions each may hold at most MAX_CLASSES distinct values: the limit on
    the predictions counts what the participant sent, whatever the labels hold, so hitting it says
    nothing about the labels.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.values: list = []
        self._codes: dict = {}
        self._seen: dict[str, set[int]] = {"labels": set(), "predictions": set()}

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, array: pa.Array, *, what: str) -> np.ndarray:
        encoded = pc.dictionary_encode(array)
        mapping = np.array([self._code(v, what) for v in encoded.dictionary.to_pylist()], dtype=np.int64)
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)] if len(mapping) else np.zeros(0, np.int64)

    def label_codes(self) -> set[int]:
        """Return the codes of values seen in the labels (the task's classes)."""
        return set(self._seen["labels"])

    def _code(self, value, what: str) -> int:
        seen = self._seen[what]
        code = self._codes.get(value)
        if code is None or code not in seen:
            if len(seen) >= MAX_CLASSES:
                raise _error(what)(f"{what} hold more than {MAX_CLASSES} distinct classes; "
                                   "is this a regression target scored as classification?")
            if code is None:
                code = self._codes[value] = len(self.values)
                self.values.append(value)
            seen.add(code)
        return code

    def parse_class_name(self, name: str):
        """Return the label a `proba__<name>` column stands for, or raise."""
        if self.kind == "str":
            return name
        column = repr(f"proba__{name[:40]}{'...' if len(name) > 40 else ''}")
        if len(name) > 20 or not _INTEGER.fullmatch(name):
            raise PredictionsInvalid(f"probability column {column} does not name an integer class")
        value = int(name)
        if not -(2**63) <= value < 2**63:
            raise PredictionsInvalid(f"probability column {column} names a class past the int64 range")
        return value
