"""Score 10 million rows through score_files in a subprocess: exact values, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

N_ROWS = 10_000_000
CHUNK = 500_000
N_CLASSES = 3
STEPS = 1_000_000  # probabilities are k / STEPS: ~1e6 distinct scores per column, so ROC AUC spills to disk
# The data as numpy arrays: labels (row_id, target) + predictions (row_id, prediction, 3 probabilities).
DATA_BYTES = N_ROWS * 8 * (2 + 2 + N_CLASSES)  # 560 MB (534 MiB)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _generate(tmp_path):
    """Write labels in id order and predictions in another order; count what sklearn needs."""
    rng = np.random.default_rng(2024)
    confusion = np.zeros((N_CLASSES, N_CLASSES + 1), dtype=np.int64)
    score_counts = np.zeros((N_CLASSES, STEPS + 1, 2), dtype=np.int64)  # column j: k -> (not j, is j)
    true_counts = np.zeros((N_CLASSES, STEPS + 1), dtype=np.int64)  # true class j: k of its own column
    label_schema = pa.schema([("row_id", pa.int64()), ("target", pa.int64())])
    pred_schema = pa.schema([("row_id", pa.int64()), ("prediction", pa.int64())]
                            + [(f"proba__{j}", pa.float64()) for j in range(N_CLASSES)])
    with pq.ParquetWriter(tmp_path / "labels.parquet", label_schema) as labels, \
            pq.ParquetWriter(tmp_path / "predictions.parquet", pred_schema) as predictions:
        for start in range(0, N_ROWS, CHUNK):
            ids = np.arange(start, start + CHUNK, dtype=np.int64)
            y = rng.integers(0, N_CLASSES, CHUNK)
            raw = rng.integers(1, 1000, (CHUNK, N_CLASSES))
            raw[np.arange(CHUNK), y] += rng.integers(0, 1500, CHUNK)
            k = raw * STEPS // raw.sum(axis=1, keepdims=True)
            k[:, -1] = STEPS - k[:, :-1].sum(axis=1)
            pred = k.argmax(axis=1)
            pred[rng.random(CHUNK) < 0.01] = N_CLASSES  # a class the labels never hold
            np.add.at(confusion, (y, pred), 1)
            for j in range(N_CLASSES):
                np.add.at(score_counts[j], (k[:, j], (y == j).astype(np.int64)), 1)
                np.add.at(true_counts[j], k[y == j, j], 1)
            labels.write_table(pa.table({"row_id": ids, "target": y}, schema=label_schema))
            order = rng.permutation(CHUNK)  # NOTE: not the labels' order: exercises the hash-partition join
            columns = {"row_id": ids[order], "prediction": pred[order],
                       **{f"proba__{j}": k[order, j] / STEPS for j in range(N_CLASSES)}}
            predictions.write_table(pa.table(columns, schema=pred_schema))
    return confusion, score_counts, true_counts


def _expected(confusion, score_counts, true_counts) -> dict:
    """Call scikit-learn on the distinct cells, weighted by how often each occurs."""
    t, p = np.nonzero(confusion)
    w = confusion[t, p]
    expected = {
        "accuracy": skm.accuracy_score(t, p, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(t, p, sample_weight=w),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for average in ("macro", "weighted"):
            expected[f"precision_{average}"] = skm.precision_score(t, p, average=average, sample_weight=w)
            expected[f"recall_{average}"] = skm.recall_score(t, p, average=average, sample_weight=w)
            expected[f"f1_{average}"] = skm.f1_score(t, p, average=average, sample_weight=w)
    aucs = []
    for j in range(N_CLASSES):
        k, positive = np.nonzero(score_counts[j])
        aucs.append(skm.roc_auc_score(positive, k / STEPS, sample_weight=score_counts[j][k, positive]))
    expected["roc_auc"] = float(np.mean(aucs))  # one-vs-rest macro, as roc_auc_score(multi_class="ovr")
    classes, ks, weights = [], [], []
    for j in range(N_CLASSES):
        k = np.nonzero(true_counts[j])[0]
        classes.append(np.full(len(k), j)), ks.append(k), weights.append(true_counts[j][k])
    y, k, weight = np.concatenate(classes), np.concatenate(ks), np.concatenate(weights)
    proba = np.full((len(y), N_CLASSES), 0.0)
    proba[np.arange(len(y)), y] = k / STEPS
    for j in range(N_CLASSES):  # the other columns do not change the log loss; fill them to sum to one
        proba[y != j, j] = (1 - k[y != j] / STEPS) / (N_CLASSES - 1)
    expected["log_loss"] = skm.log_loss(y, proba, sample_weight=weight)
    return expected


# NOTE: the child reads VmHWM, the high-water mark of its own address space. ru_maxrss would not do:
# Linux carries the parent's peak into a vfork+exec'd child's ru_maxrss (and pytest's is large).
_CHILD = """
import json, sys
from evaluator.scoring import score_files
doc = score_files("classification", sys.argv[1], sys.argv[2], bootstrap_rounds=200)
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"doc": doc, "max_rss_kib": peak_kib}))
"""


def test_ten_million_rows_score_exactly_with_memory_well_below_the_data(tmp_path):
    # Given 10 million rows whose exact metric values scikit-learn gives from weighted cells
    counts = _generate(tmp_path)
    expected = _expected(*counts)
    # When a separate process scores the files (so its peak RSS is the scorer's alone)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "labels.parquet"),
                           str(tmp_path / "predictions.parquet")], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    doc, peak = result["doc"], result["max_rss_kib"] * 1024
    # Then every value equals scikit-learn's and the peak memory is well below the data's size
    assert doc["n_rows"] == N_ROWS
    for name, value in expected.items():
        assert doc["metrics"][name] == pytest.approx(value, rel=1e-9), name
    assert doc["confusion_matrix"]["matrix"] == counts[0][:, :N_CLASSES].tolist()
    assert doc["confusion_matrix"]["other"] == counts[0][:, N_CLASSES].tolist()  # the class labels never hold
    assert doc["classes"] == [0, 1, 2]
    print(f"peak RSS {peak / 2**20:.0f} MiB, data {DATA_BYTES / 2**20:.0f} MiB")
    # NOTE: measured 300-330 MiB (56-62% of the data) with the default 64 MiB budget: ~75 MiB is the
    # interpreter and libraries, ~35 MiB pandas (pyarrow imports it when installed); the bound leaves
    # room for allocator noise.
    assert peak < 0.7 * DATA_BYTES, f"peak RSS {peak / 2**20:.0f} MiB vs data {DATA_BYTES / 2**20:.0f} MiB"
