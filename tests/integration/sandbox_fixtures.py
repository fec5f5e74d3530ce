"""Bundles and datasets for the sandbox tests: real models, and hostile ones as predict.py files."""

from __future__ import annotations

import io
import pickle
import tarfile
import textwrap
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv  # noqa: F401 - pa.csv
import pyarrow.parquet as pq

SECRET = "lbl-7f3a9c-secret"  # appears in the labels file only, so a probe can look for it


def classification_data(folder: Path, n: int = 120, seed: int = 0, secret_labels: bool = False):
    """Write features.parquet + labels.parquet of a 3-class problem; return (X, y, paths)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + y[:, None] * 1.2
    ids = [f"r{i:05d}" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    features, labels = folder / "features.parquet", folder / "labels.parquet"
    pq.write_table(pa.table({"row_id": ids, **{f"f{j}": x[:, j] for j in range(4)}}), features)
    targets = [f"{SECRET}-{v}" for v in y] if secret_labels else y
    pq.write_table(pa.table({"row_id": ids, "target": targets}), labels, compression="none")
    return x, y, features, labels


def regression_data(folder: Path, n: int = 100, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 3.0 + rng.normal(scale=0.3, size=n)
    ids = np.arange(n)
    folder.mkdir(parents=True, exist_ok=True)
    features, labels = folder / "features.csv", folder / "labels.parquet"
    pa.csv.write_csv(pa.table({"row_id": ids, **{f"x{j}": x[:, j] for j in range(3)}}), features)
    pq.write_table(pa.table({"row_id": ids, "target": y}), labels)
    return x, y, features, labels


def manifest(framework: str, model: str, predict: str | None = None, name: str = "test-model") -> bytes:
    text = f"name: {name}\nversion: 1.0.0\nframework: {framework}\nmodel: {model}\n"
    if predict:
        text += f"predict: {predict}\n"
    return text.encode()


def tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def zip_file(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def joblib_bytes(model: object) -> bytes:
    sink = io.BytesIO()
    joblib.dump(model, sink)
    return sink.getvalue()


def sklearn_bundle(path: Path, model: object) -> Path:
    return tar_gz(path, {"evaluator.yaml": manifest("sklearn", "model.joblib"), "model.joblib": joblib_bytes(model)})


def predict_bundle(path: Path, source: str, framework: str = "sklearn") -> Path:
    """A bundle whose behaviour is a predict.py (one-parameter predict(batch))."""
    return tar_gz(path, {
        "evaluator.yaml": manifest(framework, "model.bin", "predict.py:predict"),
        "model.bin": b"unused",
        "predict.py": textwrap.dedent(source).encode(),
    })


class _RunsCommand:
    """Unpickling this runs a shell command: it must only ever happen inside the sandbox."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def malicious_pickle_bundle(path: Path, marker: Path) -> Path:
    command = f"touch {marker}; echo PICKLE-RAN uid=$(id -u) >&2"
    return tar_gz(path, {"evaluator.yaml": manifest("sklearn", "model.pkl"),
                         "model.pkl": pickle.dumps(_RunsCommand(command))})


# --- hostile predict.py sources --------------------------------------------------------

SLEEPS_FOREVER = """
import time
def predict(batch):
    while True:
        time.sleep(1)
"""

ALLOCATES_WITHOUT_BOUND = """
def predict(batch):
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))
        hoard[-1][::4096] = b"x" * len(hoard[-1][::4096])
"""

FORK_BOMB = """
import os, sys, time
def predict(batch):
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as ex:
            print(f"FORK-REFUSED after {children} children: {ex}", file=sys.stderr, flush=True)
            raise
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
"""

FILLS_OUTPUT = """
import sys
def predict(batch):
    written = 0
    try:
        with open("/output/junk", "wb") as handle:
            while True:
                handle.write(b"x" * (1 << 20))
                handle.flush()
                written += 1 << 20
    except OSError as ex:
        print(f"OUTPUT-FULL after {written} bytes: {ex}", file=sys.stderr, flush=True)
    try:
        with open("/tmp/junk", "wb") as handle:
            while True:
                handle.write(b"x" * (1 << 20))
                handle.flush()
    except OSError as ex:
        print(f"TMP-FULL: {ex}", file=sys.stderr, flush=True)
    return [0] * len(batch)
"""

FLOODS_STDOUT = """
import sys
import numpy as np
def predict(batch):
    print("FLOOD-START", flush=True)
    line = "z" * 1023 + "\\n"
    for _ in range(40 * 1024):  # 40 MiB
        sys.stdout.write(line)
    print("FLOOD-END", flush=True)
    return np.zeros(len(batch), dtype=int)
"""

# Records what the sandbox looks like from inside, as one JSON line in the log.
PROBE = """
import json, os, socket, sys
import numpy as np

SECRET = %(secret)r[::-1]
HOST_PORT = %(port)d

def _connect(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as ex:
        return f"{type(ex).__name__}: {ex}"

def _scan(root):
    hits = []
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if "label" in name.lower():
                hits.append(path)
            try:
                with open(path, "rb") as handle:
                    if SECRET.encode() in handle.read(64 << 20):
                        hits.append(path)
            except OSError:
                pass
    return hits

def predict(batch):
    mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
    routes = [line for line in open("/proc/net/route").read().splitlines()[1:] if line.strip()]
    findings = {
        "euid": os.geteuid(),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "routes": routes,
        "loopback_service": _connect("127.0.0.1", HOST_PORT),
        "mounts": mounts,
    }
    # Only with no route at all can this attempt not leave the container: it must fail at once.
    findings["internet"] = _connect("192.0.2.1", 80) if not routes else "skipped: a route exists"
    try:
        open("/model/pwned", "w").write("x")
        findings["write_model"] = "written"
    except OSError as ex:
        findings["write_model"] = f"{type(ex).__name__}: {ex}"
    try:
        open("/opt/evaluator/pwned", "w").write("x")
        findings["write_root"] = "written"
    except OSError as ex:
        findings["write_root"] = f"{type(ex).__name__}: {ex}"
    skip = ("/proc", "/sys", "/dev")
    findings["label_files"] = [hit for m in mounts if not m.startswith(skip) and m != "/" for hit in _scan(m)]
    print("PROBE " + json.dumps(findings), file=sys.stderr, flush=True)
    return np.zeros(len(batch), dtype=int)
"""

# A custom entry point with load(): a linear model stored as JSON.
LINEAR_PREDICT = """
import json
import numpy as np

def load(model_path):
    return json.loads(model_path.read_text())

def predict(batch, model):
    return batch.to_numpy() @ np.array(model["coef"]) + model["intercept"]
"""
