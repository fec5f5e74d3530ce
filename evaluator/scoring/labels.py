"""Classification labels: one kind per task (integer or string), small codes in first-seen order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evaluator.errors import EvaluatorError, PredictionsInvalid

MAX_CLASSES = 1000


def label_kind(data_type: pa.DataType) -> str:
    """Return "int" or "str" for a labels column type (floats must hold whole numbers)."""
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_boolean(data_type):
        return "int"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_dictionary(data_type):
        return "str"
    raise EvaluatorError(f"classification labels must be integers or strings, not {data_type}")


def normalize(array: pa.Array, kind: str, *, what: str) -> pa.Array:
    """Cast labels or predictions to int64 or string, refusing a mix (as scikit-learn does)."""
    error = PredictionsInvalid if what == "predictions" else EvaluatorError
    data_type = array.type
    if pa.types.is_dictionary(data_type):
        array, data_type = array.cast(data_type.value_type), data_type.value_type
    if kind == "str":
        if not (pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_null(data_type)):
            raise error(f"{what} are {data_type} but the labels are strings (scikit-learn refuses a mix of "
                        "string and number labels)")
        return array.cast(pa.large_string())
    if pa.types.is_integer(data_type) or pa.types.is_boolean(data_type) or pa.types.is_null(data_type):
        return array.cast(pa.int64())
    if pa.types.is_floating(data_type):
        values = array.to_numpy(zero_copy_only=False)
        finite = values[np.isfinite(values)]
        if np.any(finite != np.floor(finite)):
            raise error(f"{what} hold non-integer numbers but the labels are integer classes")
        return pc.cast(array, pa.int64(), safe=False)
    raise error(f"{what} are {data_type} but the labels are integers")


class LabelCodes:
    """Map each distinct label to a code, in first-seen order, refusing too many classes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.values: list = []
        self._codes: dict = {}

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, array: pa.Array, *, what: str) -> np.ndarray:
        encoded = pc.dictionary_encode(array)
        mapping = np.array([self._code(v, what) for v in encoded.dictionary.to_pylist()], dtype=np.int64)
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)] if len(mapping) else np.zeros(0, np.int64)

    def _code(self, value, what: str) -> int:
        code = self._codes.get(value)
        if code is None:
            if len(self.values) >= MAX_CLASSES:
                error = PredictionsInvalid if what == "predictions" else EvaluatorError
                raise error(f"{what} hold more than {MAX_CLASSES} distinct classes; "
                            "is this a regression target scored as classification?")
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code

    def parse_class_name(self, name: str):
        """Return the label a `proba__<name>` column stands for, or raise."""
        if self.kind == "str":
            return name
        try:
            return int(name)
        except ValueError:
            raise PredictionsInvalid(f"probability column 'proba__{name}' does not name an integer class") from None
