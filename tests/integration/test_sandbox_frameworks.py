"""Every framework image loads its model format and predicts, with probabilities where it has them.

The host has neither torch, tensorflow, xgboost nor lightgbm: each model is trained by a
short script inside its own framework image (a test-only step), then evaluated as a bundle.
"""

from __future__ import annotations

import io
import shutil
import textwrap
import uuid

import pyarrow.parquet as pq
import pytest

from evaluator.config import Config
from evaluator.evaluation import evaluate_bundle
from evaluator.sandbox.runner import DockerSandbox
from evaluator.settings import Scoring
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]

PRELUDE = """
import numpy as np, pyarrow.parquet as pq
table = pq.read_table("/work/features.parquet").to_pandas()
X = table.drop(columns=["row_id"]).to_numpy().astype("float32")
y = pq.read_table("/work/labels.parquet").to_pandas()["target"].to_numpy()
"""

TRAIN = {
    "xgboost": ("sklearn", "model.joblib", """
        import joblib, xgboost
        joblib.dump(xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y), "/work/model.joblib")
    """),
    "lightgbm": ("sklearn", "model.joblib", """
        import joblib, lightgbm
        joblib.dump(lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y), "/work/model.joblib")
    """),
    "pytorch": ("pytorch", "model.pt", """
        import torch
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(200):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
            loss.backward()
            opt.step()
        torch.jit.script(net).save("/work/model.pt")
    """),
    "tensorflow": ("tensorflow", "model.keras", """
        import keras
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(3, activation="softmax")])
        net.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
        net.fit(X, y, epochs=60, verbose=0)
        net.save("/work/model.keras")
    """),
}


@pytest.mark.parametrize("framework", sorted(TRAIN))
def test_framework_image_predicts_with_probabilities(framework, docker_client, images_built, tmp_path,
                                                     sandbox_work_dir):
    image, model_file, script = TRAIN[framework]
    images_built(image)
    workdir = sandbox_work_dir.parent / f"train-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(mode=0o777)
    workdir.chmod(0o777)
    _, _, features, labels = fx.classification_data(workdir)
    (workdir / "train.py").write_text(PRELUDE + textwrap.dedent(script))
    try:
        docker_client.containers.run(f"evaluator-{image}", ["/work/train.py"], entrypoint="/opt/venv/bin/python",
                                     volumes={str(workdir): {"bind": "/work", "mode": "rw"}}, network_disabled=True,
                                     network_mode="none", remove=True, environment={"HOME": "/tmp"})
        bundle = fx.tar_gz(tmp_path / "b.tar.gz", {"evaluator.yaml": fx.manifest(framework, model_file),
                                                   model_file: (workdir / model_file).read_bytes()})
        shutil.copy(features, tmp_path / "features.parquet")
        shutil.copy(labels, tmp_path / "labels.parquet")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    features, labels = tmp_path / "features.parquet", tmp_path / "labels.parquet"
    config = Config(sandbox_timeout_s=120, sandbox_memory="2g")

    evaluation = evaluate_bundle(bundle, features, labels, scoring=Scoring("classification"),
                                 sandbox=DockerSandbox(docker_client), config=config,
                                 work_dir=sandbox_work_dir, run_id=f"test-{framework}")

    assert evaluation.status == "succeeded", (evaluation.failure, evaluation.log[-3000:])
    predictions = pq.read_table(io.BytesIO(evaluation.predictions)).to_pandas()
    assert [c for c in predictions.columns if c.startswith("proba__")] == ["proba__0", "proba__1", "proba__2"]
    assert evaluation.metrics["metrics"]["accuracy"] > 0.7
    assert "log_loss" in evaluation.metrics["metrics"]
