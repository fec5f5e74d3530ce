"""Hostile predictions files: what a model can write to /output/predictions.parquet byte for byte.

Each builder writes labels.parquet and predictions.parquet into a folder and returns
(labels, predictions). `CASES` maps a case name to (builder, task, failure code expected);
bench/hostile_scoring.py measures the scorer's peak memory on every one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Built = tuple[Path, Path]


def _labels(folder: Path, n: int, *, string_ids: bool = False, string_classes: bool = False,
            regression: bool = False) -> tuple[Path, pa.Array, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    ids = pa.array([f"r{i:06d}" for i in range(n)]) if string_ids else pa.array(np.arange(n, dtype=np.int64))
    y = rng.normal(size=n) if regression else rng.integers(0, 3, n)
    target = pa.array([f"class-{v}" for v in y]) if string_classes else pa.array(y)
    path = folder / "labels.parquet"
    pq.write_table(pa.table({"row_id": ids, "target": target}), path)
    return path, ids, y


def _write(folder: Path, table: pa.Table, **options) -> Path:
    path = folder / "predictions.parquet"
    pq.write_table(table, path, **options)
    return path


def dictionary_bomb(folder: Path) -> Built:
    """65,536 rows of one 64 KiB string, dictionary-encoded, zstd, 1,024-row groups: ~5.7 GB decoded."""
    n = 65_536
    labels, ids, _ = _labels(folder, n, string_classes=True)
    value = "b" * (64 * 1024)
    prediction = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))
    table = pa.table({"row_id": ids, "prediction": prediction})
    # NOTE: without the stored Arrow schema a reader sees a plain string column, and materializes it.
    return labels, _write(folder, table, compression="zstd", row_group_size=1024, store_schema=False)


def plain_zstd_bomb(folder: Path) -> Built:
    """The same string plain-encoded (no dictionary): pages of repeated bytes that zstd shrinks 1000-fold."""
    n = 16_384
    labels, ids, _ = _labels(folder, n, string_classes=True)
    table = pa.table({"row_id": ids, "prediction": pa.array(["p" * (64 * 1024)] * n)})
    return labels, _write(folder, table, compression="zstd", use_dictionary=False, row_group_size=4096)


def huge_row_id(folder: Path) -> Built:
    """One row id of 64 MiB (zstd shrinks it to kilobytes); every other row is fine."""
    n = 1000
    labels, ids, y = _labels(folder, n, string_ids=True)
    row_ids = ids.to_pylist()
    row_ids[0] = "x" * (64 << 20)
    table = pa.table({"row_id": pa.array(row_ids, pa.large_string()), "prediction": pa.array(y)})
    return labels, _write(folder, table, compression="zstd", use_dictionary=False)


def huge_footer(folder: Path) -> Built:
    """Valid rows, and 48 MiB of key-value metadata in the footer."""
    n = 100
    labels, ids, y = _labels(folder, n)
    table = pa.table({"row_id": ids, "prediction": pa.array(y)})
    table = table.replace_schema_metadata({"junk": "m" * (48 << 20)})
    return labels, _write(folder, table, compression="zstd")


def many_row_groups(folder: Path) -> Built:
    """One row per row group: 100,000 row groups, a footer of tens of megabytes."""
    n = 100_000
    labels, ids, y = _labels(folder, n)
    table = pa.table({"row_id": ids, "prediction": pa.array(y)})
    return labels, _write(folder, table, row_group_size=1)


def many_columns(folder: Path) -> Built:
    """20,000 proba__ columns for a 3-class problem."""
    n = 200
    labels, ids, y = _labels(folder, n)
    columns = {"row_id": ids, "prediction": pa.array(y)}
    zeros = pa.array(np.zeros(n))
    columns.update({f"proba__{i}": zeros for i in range(20_000)})
    return labels, _write(folder, pa.table(columns), compression="zstd")


def nested_prediction(folder: Path) -> Built:
    """prediction as list<int64>, each list a million elements long (zstd)."""
    n = 64
    labels, ids, _ = _labels(folder, n)
    values = pa.array(np.zeros(n * 1_000_000, dtype=np.int64))
    offsets = pa.array(np.arange(0, n * 1_000_000 + 1, 1_000_000, dtype=np.int32))
    table = pa.table({"row_id": ids, "prediction": pa.ListArray.from_arrays(offsets, values)})
    return labels, _write(folder, table, compression="zstd")


def struct_row_id(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    table = pa.table({"row_id": pa.StructArray.from_arrays([ids, ids], names=["a", "b"]),
                      "prediction": pa.array(y)})
    return labels, _write(folder, table)


def duplicate_columns(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    table = pa.Table.from_arrays([ids, pa.array(y), pa.array(y)], names=["row_id", "prediction", "prediction"])
    return labels, _write(folder, table)


def extra_column(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    return labels, _write(folder, pa.table({"row_id": ids, "prediction": pa.array(y), "junk": pa.array(y)}))


def nan_regression(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n, regression=True)
    values = y.copy()
    values[3], values[7] = np.nan, np.inf
    return labels, _write(folder, pa.table({"row_id": ids, "prediction": pa.array(values)}))


def nan_probability(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    proba = np.full(n, 1 / 3)
    proba[5] = np.nan
    table = pa.table({"row_id": ids, "prediction": pa.array(y), "proba__0": pa.array(proba),
                      "proba__1": pa.array(np.full(n, 1 / 3)), "proba__2": pa.array(np.full(n, 1 / 3))})
    return labels, _write(folder, table)


def nul_in_row_id(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n, string_ids=True)
    row_ids = ids.to_pylist()
    row_ids[0] = "r\x00" + "\x00" * 10
    return labels, _write(folder, pa.table({"row_id": pa.array(row_ids), "prediction": pa.array(y)}))


def escapes_in_row_id(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n, string_ids=True)
    row_ids = ids.to_pylist()
    row_ids[:3] = ["\x1b[2J\x1b]0;pwned\x07", "run succeeded\r\n\x1b[32mOK", "\u202etxt.exe\u2066"]
    return labels, _write(folder, pa.table({"row_id": pa.array(row_ids), "prediction": pa.array(y)}))


def one_row_short(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    return labels, _write(folder, pa.table({"row_id": ids.slice(1), "prediction": pa.array(y[1:])}))


def one_row_extra(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    row_ids = pa.array(np.arange(n + 1, dtype=np.int64))
    return labels, _write(folder, pa.table({"row_id": row_ids, "prediction": pa.array(np.append(y, 0))}))


def timestamp_prediction(folder: Path) -> Built:
    n = 50
    labels, ids, _ = _labels(folder, n)
    stamps = pa.array(np.arange(n).astype("datetime64[s]"))
    return labels, _write(folder, pa.table({"row_id": ids, "prediction": stamps}))


def string_probability(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    table = pa.table({"row_id": ids, "prediction": pa.array(y), "proba__0": pa.array(["0.5"] * n)})
    return labels, _write(folder, table)


def binary_row_id(folder: Path) -> Built:
    n = 50
    labels, ids, y = _labels(folder, n)
    return labels, _write(folder, pa.table({"row_id": pa.array([b"\xff\xfe"] * n), "prediction": pa.array(y)}))


def corrupt_page(folder: Path) -> Built:
    """A valid footer over a data page whose bytes were overwritten."""
    n = 5000
    labels, ids, y = _labels(folder, n)
    path = _write(folder, pa.table({"row_id": ids, "prediction": pa.array(y)}), compression="snappy",
                  use_dictionary=False)
    column = pq.ParquetFile(path).metadata.row_group(0).column(1)
    data = bytearray(path.read_bytes())
    start = column.data_page_offset + 40  # past the page header, into the compressed values
    data[start:start + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    return labels, path


def truncated_file(folder: Path) -> Built:
    n = 500
    labels, ids, y = _labels(folder, n)
    path = _write(folder, pa.table({"row_id": ids, "prediction": pa.array(y)}))
    path.write_bytes(path.read_bytes()[:-30] + b"PAR1")
    return labels, path


def not_parquet(folder: Path) -> Built:
    labels, _, _ = _labels(folder, 10)
    path = folder / "predictions.parquet"
    path.write_bytes(b"row_id,prediction\n0,1\n")
    return labels, path


Case = tuple[Callable[[Path], Built], str]
CASES: dict[str, Case] = {  # name -> (builder, task); every one must end predictions_invalid
    "dictionary_bomb": (dictionary_bomb, "classification"),
    "plain_zstd_bomb": (plain_zstd_bomb, "classification"),
    "huge_row_id": (huge_row_id, "classification"),
    "huge_footer": (huge_footer, "classification"),
    "many_row_groups": (many_row_groups, "classification"),
    "many_columns": (many_columns, "classification"),
    "nested_prediction": (nested_prediction, "classification"),
    "struct_row_id": (struct_row_id, "classification"),
    "duplicate_columns": (duplicate_columns, "classification"),
    "extra_column": (extra_column, "classification"),
    "nan_regression": (nan_regression, "regression"),
    "nan_probability": (nan_probability, "classification"),
    "nul_in_row_id": (nul_in_row_id, "classification"),
    "escapes_in_row_id": (escapes_in_row_id, "classification"),
    "one_row_short": (one_row_short, "classification"),
    "one_row_extra": (one_row_extra, "classification"),
    "timestamp_prediction": (timestamp_prediction, "classification"),
    "string_probability": (string_probability, "classification"),
    "binary_row_id": (binary_row_id, "classification"),
    "corrupt_page": (corrupt_page, "classification"),
    "truncated_file": (truncated_file, "classification"),
    "not_parquet": (not_parquet, "classification"),
}
