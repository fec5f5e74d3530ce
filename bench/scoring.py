"""Benchmark score_files against pandas + scikit-learn on 10 million rows.

Usage: python bench/scoring.py [--rows N] [--dir DIR]
Each contender runs in its own subprocess so its peak RSS (VmHWM) is its own. Needs pandas
(the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

_PEAK = """
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
"""

OURS = """
import json, sys, time
t = time.perf_counter()
from evaluator.scoring import score_files
doc = score_files("classification", sys.argv[1], sys.argv[2], primary_metric="accuracy", bootstrap_rounds=1000)
seconds = time.perf_counter() - t
""" + _PEAK + """
print(json.dumps({"seconds": seconds, "peak": peak, "metrics": doc["metrics"]}))
"""

PANDAS = """
import json, sys, time, warnings
t = time.perf_counter()
import pandas as pd
from sklearn import metrics as m
labels = pd.read_csv(sys.argv[1]) if sys.argv[1].endswith(".csv") else pd.read_parquet(sys.argv[1])
preds = pd.read_parquet(sys.argv[2])
df = labels.merge(preds, on="row_id", how="inner", validate="one_to_one")
y, p = df["target"].to_numpy(), df["prediction"].to_numpy()
proba = df[["proba__0", "proba__1"]].to_numpy()
out = {"accuracy": m.accuracy_score(y, p), "balanced_accuracy": m.balanced_accuracy_score(y, p)}
for avg in ("macro", "weighted"):
    out[f"precision_{avg}"] = m.precision_score(y, p, average=avg)
    out[f"recall_{avg}"] = m.recall_score(y, p, average=avg)
    out[f"f1_{avg}"] = m.f1_score(y, p, average=avg)
out["roc_auc"] = m.roc_auc_score(y, proba[:, 1])
out["log_loss"] = m.log_loss(y, proba)
m.confusion_matrix(y, p)
seconds = time.perf_counter() - t
""" + _PEAK + """
print(json.dumps({"seconds": seconds, "peak": peak, "metrics": out}))
"""


def generate(directory: Path, rows: int, chunk: int = 1_000_000) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    labels_pq, labels_csv, preds = directory / "labels.parquet", directory / "labels.csv", directory / "preds.parquet"
    label_schema = pa.schema([("row_id", pa.int64()), ("target", pa.int64())])
    pred_schema = pa.schema([("row_id", pa.int64()), ("prediction", pa.int64()),
                             ("proba__0", pa.float64()), ("proba__1", pa.float64())])
    with pq.ParquetWriter(labels_pq, label_schema) as lw, pq.ParquetWriter(preds, pred_schema) as pw, \
            pacsv.CSVWriter(labels_csv, label_schema) as cw:
        for start in range(0, rows, chunk):
            ids = np.arange(start, min(rows, start + chunk), dtype=np.int64)
            y = rng.integers(0, 2, len(ids))
            p1 = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
            table = pa.table({"row_id": ids, "target": y}, schema=label_schema)
            lw.write_table(table), cw.write_table(table)
            order = rng.permutation(len(ids))  # predictions in another order than the labels
            pw.write_table(pa.table({"row_id": ids[order], "prediction": (p1 > 0.5).astype(np.int64)[order],
                                     "proba__0": 1 - p1[order], "proba__1": p1[order]}, schema=pred_schema))
    return labels_pq, labels_csv, preds


def run(code: str, *args: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        labels_pq, labels_csv, preds = generate(Path(tmp), args.rows)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f}s "
              f"(labels.parquet {labels_pq.stat().st_size >> 20} MiB, "
              f"labels.csv {labels_csv.stat().st_size >> 20} MiB, "
              f"predictions {preds.stat().st_size >> 20} MiB)")
        for name, labels in (("parquet", labels_pq), ("csv", labels_csv)):
            ours, theirs = run(OURS, labels, preds), run(PANDAS, labels, preds)
            worst = max(abs(ours["metrics"][k] - v) / max(abs(v), 1e-300) for k, v in theirs["metrics"].items())
            print(f"[{name} labels] score_files: {ours['seconds']:.1f}s, peak {ours['peak'] >> 20} MiB | "
                  f"pandas+sklearn: {theirs['seconds']:.1f}s, peak {theirs['peak'] >> 20} MiB | "
                  f"time ratio {ours['seconds'] / theirs['seconds']:.2f}, memory ratio "
                  f"{ours['peak'] / theirs['peak']:.2f} | max relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
