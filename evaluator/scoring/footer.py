"""A predictions file's footer, checked before one value is decoded: the model wrote every byte of it.

What the footer promises (types, row counts, sizes) bounds what decoding will cost, so
a file that promises too much is refused here with a sentence the participant can act on.
What it cannot promise, `sources.PredictionsSource` checks batch by batch while decoding,
and the scoring subprocess's memory limit (`evaluator.isolated_scoring`) backs both:
a footer that lies still cannot take down the worker.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evaluator.errors import PredictionsInvalid
from evaluator.scoring.labels import MAX_CLASSES

PROBA_PREFIX = "proba__"
_MAGIC = b"PAR1"
_CODECS = {"UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4_RAW", "BROTLI"}
_DICTIONARY_PAGE = 2
_PAGE_HEADER_BYTES = 256  # a dictionary page header is a few dozen bytes
_FIXED_WIDTH = 8  # bytes a decoded number takes at most


@dataclasses.dataclass(frozen=True)
class PredictionLimits:
    """Caps on what a predictions file may make the scorer decode."""

    max_footer_bytes: int = 16 << 20
    max_row_groups: int = 100_000
    max_column_chunks: int = 1 << 20  # row groups x columns: what the footer describes, one object each
    # row_id, prediction, one proba__<class> per class. NOTE: not the labels' own class count: a model may
    # give probabilities for classes a test set lacks (scikit-learn's `labels=`); batches shrink with width.
    max_columns: int = MAX_CLASSES + 2
    max_value_bytes: int = 1024  # one string row id or predicted class
    max_dictionary_bytes: int = 16 << 20  # one dictionary page, decompressed
    max_batch_bytes: int = 64 << 20  # decoded bytes of one batch, all columns
    max_total_bytes: int = 8 << 30  # decoded bytes of the whole file


@dataclasses.dataclass(frozen=True)
class PredictionsLayout:
    """What the checked footer says: the columns to read and how many rows a batch may hold."""

    num_rows: int
    proba_columns: list[str]
    string_columns: list[str]
    batch_rows: int


def inspect_predictions(path: Path, *, limits: PredictionLimits, expected_rows: int | None = None,
                        with_proba: bool = True,
                        chunk_rows: int = 1 << 16) -> PredictionsLayout:
    """Check a predictions file's footer against the limits and the labels, reading no data page.

    Raises:
        PredictionsInvalid: the footer is unreadable, too large, or promises something the
            scorer refuses (nested or unknown columns, a row count other than the labels', values
            longer than `limits.max_value_bytes`, more decoded bytes than `limits.max_total_bytes`).
    """
    _check_envelope(path, limits)
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        schema, metadata = parquet.schema_arrow, parquet.metadata
    except (pa.ArrowException, OSError, ValueError, MemoryError) as ex:
        raise PredictionsInvalid(f"predictions.parquet is not a readable Parquet file: {ex}") from None
    names = schema.names
    proba = _check_columns(schema, metadata, limits, with_proba)
    # NOTE: a few rows too many or too few are decoded, so the alignment report can name them; far too
    # many are refused here, since rows of one repeated number cost nothing to store and 8 bytes to decode.
    if expected_rows is not None and metadata.num_rows > 2 * expected_rows + 1024:
        raise PredictionsInvalid(f"predictions.parquet has {metadata.num_rows} rows but there are {expected_rows} "
                                 "rows to predict: write exactly one row per row of the features")
    if metadata.num_row_groups > limits.max_row_groups:
        raise PredictionsInvalid(f"predictions.parquet has {metadata.num_row_groups} row groups; at most "
                                 f"{limits.max_row_groups} are accepted (write larger row groups)")
    if metadata.num_row_groups * len(names) > limits.max_column_chunks:
        raise PredictionsInvalid(f"predictions.parquet describes {metadata.num_row_groups * len(names)} column "
                                 f"chunks; at most {limits.max_column_chunks} are accepted")
    strings = [name for name in names if _is_string(schema.field(name).type)]
    row_bytes = _check_row_groups(path, metadata, names, strings, limits)
    batch_rows = max(1, min(chunk_rows, limits.max_batch_bytes // max(1, row_bytes)))
    return PredictionsLayout(metadata.num_rows, proba, strings, batch_rows)


def _check_envelope(path: Path, limits: PredictionLimits) -> None:
    """The magic bytes and the footer's length, from the file's first 4 and last 8 bytes."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(max(0, size - 8))
        tail = handle.read(8)
    if size < 12 or head != _MAGIC or tail[4:] != _MAGIC:
        raise PredictionsInvalid("predictions.parquet is not a readable Parquet file (no PAR1 magic bytes; "
                                 "encrypted footers are not accepted)")
    footer = int.from_bytes(tail[:4], "little")
    if footer > size - 12:
        raise PredictionsInvalid(f"predictions.parquet is truncated: its footer claims {footer} bytes "
                                 f"of a {size}-byte file")
    if footer > limits.max_footer_bytes:
        raise PredictionsInvalid(f"predictions.parquet has a {footer}-byte footer; at most "
                                 f"{limits.max_footer_bytes} bytes are accepted (drop custom metadata, "
                                 "write fewer row groups)")


def check_column_names(names: list[str], what: str, missing_hint: str = "") -> list[str]:
    """Refuse repeated, missing and unexpected column names of a predictions file; return its proba columns.

    Shared by the Parquet footer check and the CSV header check: the names are the participant's, so
    each is quoted at most 100 characters long and at most a few are listed.
    """
    def quoted(some: list[str]) -> str:
        return ", ".join(repr(name[:100]) for name in some)

    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PredictionsInvalid(f"{what} has more than one column named {quoted(repeated[:5])}")
    missing = [name for name in ("row_id", "prediction") if name not in names]
    if missing:
        raise PredictionsInvalid(f"{what} has no column {quoted(missing)}{missing_hint} "
                                 f"(columns: {quoted(names[:10])}{', ...' if len(names) > 10 else ''})")
    unknown = [name for name in names if name not in ("row_id", "prediction") and not name.startswith(PROBA_PREFIX)]
    if unknown:
        raise PredictionsInvalid(f"{what} has the unexpected column {quoted(unknown[:1])}: a predictions file "
                                 f"holds row_id, prediction and optionally {PROBA_PREFIX}<class> columns")
    return [name for name in names if name.startswith(PROBA_PREFIX)]


def _check_columns(schema: pa.Schema, metadata: pq.FileMetaData, limits: PredictionLimits,
                   with_proba: bool) -> list[str]:
    names = schema.names
    proba = check_column_names(names, "predictions.parquet")
    allowed = limits.max_columns - 2
    if proba and not with_proba:
        raise PredictionsInvalid(f"predictions.parquet has {len(proba)} {PROBA_PREFIX} columns; a regression "
                                 "predictions file holds row_id and prediction only")
    if len(proba) > allowed:
        raise PredictionsInvalid(f"predictions.parquet has {len(proba)} {PROBA_PREFIX} columns; at most {allowed} "
                                 f"are accepted (one per class; a classification has at most {allowed} classes)")
    if metadata.num_columns != len(names):
        raise PredictionsInvalid("predictions.parquet has nested columns (lists, structs or maps); every column "
                                 "must hold one number or string per row")
    for name in names:
        data_type = schema.field(name).type
        if not _accepted(name, data_type):
            raise PredictionsInvalid(f"predictions.parquet column {name!r} has type {data_type}; "
                                     f"{_EXPECTED[_role(name)]}")
    return proba


_EXPECTED = {
    "row_id": "row ids are integers or strings",
    "prediction": "a prediction is one number or string per row",
    "proba": "probabilities are floating-point numbers",
}


def _role(name: str) -> str:
    return name if name in ("row_id", "prediction") else "proba"


def _is_string(data_type: pa.DataType) -> bool:
    """Variable-length values, whose decoded size the footer does not bound."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    return (pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_binary(data_type)
            or pa.types.is_large_binary(data_type))


def _is_nested(data_type: pa.DataType) -> bool:
    return pa.types.is_nested(data_type) or isinstance(data_type, pa.ExtensionType)


def _accepted(name: str, data_type: pa.DataType) -> bool:
    role = _role(name)
    value_type = data_type.value_type if pa.types.is_dictionary(data_type) else data_type
    if pa.types.is_dictionary(data_type) and role == "proba":
        return False
    integer = pa.types.is_integer(value_type)
    if role == "row_id":
        return integer or pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
    if role == "prediction":  # NOTE: scalar types the labels do not match are refused with the labels' kind
        return not _is_nested(value_type)
    return integer or pa.types.is_floating(value_type) or pa.types.is_null(value_type)


def _check_row_groups(path: Path, metadata: pq.FileMetaData, names: list[str], strings: list[str],
                      limits: PredictionLimits) -> int:
    """Check every column chunk's declared counts and sizes; return the bytes a decoded row may take."""
    string_index = {names.index(name) for name in strings}
    total_rows, total_bytes, row_bytes = 0, 0, _FIXED_WIDTH * len(names)
    with path.open("rb") as handle:
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            total_rows += group.num_rows
            widest = _FIXED_WIDTH * (len(names) - len(strings))
            for j in range(group.num_columns):
                chunk = group.column(j)
                name = names[j]
                if chunk.num_values != group.num_rows:
                    raise PredictionsInvalid(f"predictions.parquet is corrupt: row group {i} has {group.num_rows} "
                                             f"rows but its column {name!r} has {chunk.num_values} values")
                if chunk.compression not in _CODECS:
                    raise PredictionsInvalid(f"predictions.parquet column {name!r} uses the {chunk.compression} "
                                             f"codec; use one of {', '.join(sorted(_CODECS))}")
                size = chunk.total_uncompressed_size
                if size < 0 or chunk.total_compressed_size < 0:
                    raise PredictionsInvalid(f"predictions.parquet is corrupt: row group {i} column {name!r} "
                                             "has a negative size")
                total_bytes += size
                if j in string_index and group.num_rows:
                    widest += _string_bytes_per_value(handle, chunk, group.num_rows, name, limits)
            row_bytes = max(row_bytes, widest)
    if total_rows != metadata.num_rows:
        raise PredictionsInvalid(f"predictions.parquet is corrupt: its row groups hold {total_rows} rows, "
                                 f"its footer says {metadata.num_rows}")
    if total_bytes > limits.max_total_bytes:
        raise PredictionsInvalid(f"predictions.parquet decompresses to {total_bytes} bytes; at most "
                                 f"{limits.max_total_bytes} are accepted")
    return row_bytes


def _string_bytes_per_value(handle, chunk: pq.ColumnChunkMetaData, rows: int, name: str,
                            limits: PredictionLimits) -> int:
    """Bound the decoded bytes of one value of a string column chunk, or refuse the chunk.

    Plain pages decode to about their own size, so the declared size over the value count is
    the average length. A dictionary page decodes once but each of its values may be repeated
    on every row (a 64 KiB value on 65,536 rows is 4 GiB from a 170 KB file): its header tells
    its size and number of values, whose average must be under the cap.
    """
    too_long = (f"predictions.parquet column {name!r} holds values longer than {limits.max_value_bytes} bytes "
                f"(a {'row id' if name == 'row_id' else 'class'} must be at most {limits.max_value_bytes} bytes)")
    dictionary = _dictionary_page(handle, chunk, name)
    if dictionary is None:
        if chunk.total_uncompressed_size / rows > limits.max_value_bytes + 4:  # NOTE: 4: each value's length
            raise PredictionsInvalid(too_long)
        return max(1, chunk.total_uncompressed_size // rows + 1)
    size, count = dictionary
    if size > limits.max_dictionary_bytes:
        raise PredictionsInvalid(f"predictions.parquet column {name!r} has a {size}-byte dictionary page; at most "
                                 f"{limits.max_dictionary_bytes} bytes are accepted")
    if count <= 0 or size / count > limits.max_value_bytes + 4:
        raise PredictionsInvalid(too_long)
    return min(limits.max_value_bytes, max(0, size - 4 * (count - 1))) + 4


def _dictionary_page(handle, chunk: pq.ColumnChunkMetaData, name: str) -> tuple[int, int] | None:
    """Return (uncompressed size, value count) of the chunk's dictionary page, None if it starts with data."""
    start = chunk.data_page_offset  # NOTE: where the Parquet reader starts: see ComputeColumnChunkRange
    if chunk.has_dictionary_page and 0 < chunk.dictionary_page_offset < start:
        start = chunk.dictionary_page_offset
    handle.seek(start)
    try:
        header = _CompactReader(handle.read(_PAGE_HEADER_BYTES)).struct()
    except (IndexError, ValueError):
        raise PredictionsInvalid(f"predictions.parquet is corrupt: column {name!r} has an unreadable page "
                                 "header") from None
    if header.get(1) != _DICTIONARY_PAGE:
        return None
    details = header.get(7)
    if not isinstance(header.get(2), int) or not isinstance(details, dict) or not isinstance(details.get(1), int):
        raise PredictionsInvalid(f"predictions.parquet is corrupt: column {name!r} has a malformed dictionary page")
    return header[2], details[1]


class _CompactReader:
    """Just enough of Thrift's compact protocol to read a page header: ints and nested structs."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at, self._depth = data, 0, 0

    def _byte(self) -> int:
        value = self._data[self._at]
        self._at += 1
        return value

    def _varint(self) -> int:
        shift = result = 0
        while True:
            byte = self._byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def _zigzag(self) -> int:
        value = self._varint()
        return (value >> 1) ^ -(value & 1)

    def struct(self) -> dict:
        self._depth += 1
        if self._depth > 8:
            raise ValueError("structs nested too deeply")
        fields, last = {}, 0
        while (byte := self._byte()) != 0:
            delta, kind = byte >> 4, byte & 0x0F
            last = last + delta if delta else self._zigzag()
            fields[last] = self._value(kind)
        self._depth -= 1
        return fields

    def _value(self, kind: int):
        if kind in (1, 2):
            return kind == 1
        if kind == 3:
            return self._byte()
        if kind in (4, 5, 6):
            return self._zigzag()
        if kind == 7:
            self._at += 8
            return None
        if kind == 8:
            self._at += self._varint()
            return None
        if kind in (9, 10):
            header = self._byte()
            count = header >> 4 if header >> 4 != 15 else self._varint()
            element = header & 0x0F
            if element in (1, 2):  # NOTE: in a list a boolean takes a byte; as a field, none
                return [self._byte() == 1 for _ in range(count)]
            return [self._value(element) for _ in range(count)]
        if kind == 12:
            return self.struct()
        raise ValueError(f"unsupported thrift type {kind}")
