"""`evaluator demo`: what a data owner and two participants do, end to end, through the public API.

Registers a sample dataset and benchmark, uploads a scikit-learn and an ONNX
bundle through presigned URLs, waits for the event-driven runs and returns the
runs and the leaderboard.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

from evaluator.client import ApiClient, ClientError, upload_file

BENCHMARK = "demo-breast-cancer"
DATASET = ("demo-breast-cancer", "1")


def sample_data(folder: Path) -> tuple[Path, Path, object, object]:
    """Write the hidden test split (features, labels) and return the training split too."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.4, random_state=7,
                                                        stratify=data.target)
    ids = [f"case-{i:04d}" for i in range(len(y_test))]
    columns = {f"x{j:02d}": x_test[:, j] for j in range(x_test.shape[1])}
    features, labels = folder / "features.parquet", folder / "labels.parquet"
    pq.write_table(pa.table({"row_id": ids, **columns}), features)
    pq.write_table(pa.table({"row_id": ids, "target": y_test}), labels)
    return features, labels, x_train, y_train


def _bundle(folder: Path, name: str, manifest: str, files: dict[str, bytes]) -> Path:
    path = folder / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in {"evaluator.yaml": manifest.encode(), **files}.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def sklearn_bundle(folder: Path, x_train, y_train) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    manifest = "name: logreg\nversion: 1.0.0\nframework: sklearn\nmodel: model.joblib\n"
    return _bundle(folder, "logreg", manifest, {"model.joblib": buffer.getvalue()})


def onnx_bundle(folder: Path, x_train, y_train) -> Path:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0).fit(x_train, y_train)
    onnx_model = to_onnx(model, x_train[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    manifest = "name: forest\nversion: 1.0.0\nframework: onnx\nmodel: model.onnx\n"
    return _bundle(folder, "forest", manifest, {"model.onnx": onnx_model.SerializeToString()})


def _create_or_get(client: ApiClient, path: str, body: dict, existing: str) -> dict:
    try:
        return client.post(path, body)
    except ClientError as ex:
        if ex.code != "conflict":
            raise
        return client.get(existing)


def run_demo(api_url: str, admin_token: str, *, say: Callable[[str], None] = print, timeout_s: float = 900) -> dict:
    """Play the data owner and two participants; returns {runs, leaderboard}."""
    admin = ApiClient(api_url, admin_token)
    with tempfile.TemporaryDirectory(prefix="evaluator-demo-") as tmp:
        folder = Path(tmp)
        features, labels, x_train, y_train = sample_data(folder)
        name, version = DATASET
        dataset = _create_or_get(admin, "/v1/datasets", {"name": name, "version": version},
                                 f"/v1/datasets/{name}:{version}")
        if dataset["status"] == "pending" and "uploads" in dataset:
            say(f"data owner: uploading the hidden test set {name}:{version} through presigned URLs")
            upload_file(dataset["uploads"]["features"], features)
            upload_file(dataset["uploads"]["labels"], labels)
        dataset = _wait(lambda: admin.get(f"/v1/datasets/{name}:{version}"), lambda d: d["status"] != "pending",
                        120, "the dataset to register")
        if dataset["status"] != "ready":
            raise ClientError(f"the sample dataset is {dataset['status']}: {dataset['reason']}")
        say(f"data owner: dataset ready ({dataset['row_count']} rows, sha256 {dataset['labels_sha256'][:12]}...)")
        _create_or_get(admin, "/v1/benchmarks", {"id": BENCHMARK, "dataset": f"{name}:{version}",
                                                 "task": "classification", "primary_metric": "accuracy",
                                                 "limits": {"timeout_s": 300, "memory": "1g"}},
                       f"/v1/benchmarks/{BENCHMARK}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        submissions = []
        for owner, make in (("alice", sklearn_bundle), ("bob", onnx_bundle)):
            token = admin.post("/v1/tokens", {"owner": owner, "role": "participant", "label": "demo"})["token"]
            participant = ApiClient(api_url, token)
            bundle = make(folder, x_train, y_train)
            submission = participant.submit(BENCHMARK, bundle, name=bundle.name.split(".")[0], version=stamp)
            say(f"{owner}: uploaded {bundle.name} ({bundle.stat().st_size} bytes) -> {submission['key']}")
            submissions.append((owner, participant, submission))
        runs = []
        for owner, participant, submission in submissions:
            run = participant.wait_for_run(submission["id"], timeout_s=timeout_s)
            say(f"{owner}: run {run['id']} {run['status']}")
            runs.append(run)
        return {"runs": runs, "leaderboard": admin.get(f"/v1/benchmarks/{BENCHMARK}/leaderboard")}


def _wait(fetch, done, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise ClientError(f"timed out waiting for {what}")
        time.sleep(0.5)
