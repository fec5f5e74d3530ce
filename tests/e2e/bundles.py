"""Bundles the e2e tests upload: a real scikit-learn model, and one that sleeps before predicting."""

from __future__ import annotations

import io

import joblib
import numpy as np

from tests.integration.helpers import iris_like, tar_bundle


def trained_model(seed: int = 1):
    from sklearn.linear_model import LogisticRegression

    features, labels = iris_like(300, seed=seed)
    x = np.column_stack([features.column(f"f{j}").to_numpy() for j in range(4)])
    return LogisticRegression(max_iter=500).fit(x, labels.column("target").to_numpy())


def sklearn_bundle(seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(trained_model(seed), buffer)
    manifest = b"name: logreg\nversion: 1.0.0\nframework: sklearn\nmodel: model.joblib\n"
    return tar_bundle({"evaluator.yaml": manifest, "model.joblib": buffer.getvalue()})


def sleepy_bundle(seconds: float) -> bytes:
    """A model that sleeps, then predicts: long enough to kill a worker or cancel mid-run."""
    buffer = io.BytesIO()
    joblib.dump(trained_model(), buffer)
    manifest = b"name: sleepy\nversion: 1\nframework: sklearn\nmodel: model.joblib\npredict: predict.py:predict\n"
    code = (f"import time\n\ndef predict(batch, model):\n    time.sleep({seconds})\n"
            f"    return model.predict(batch.to_numpy())\n").encode()
    return tar_bundle({"evaluator.yaml": manifest, "model.joblib": buffer.getvalue(), "predict.py": code})
