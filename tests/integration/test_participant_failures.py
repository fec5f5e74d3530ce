"""Model-caused failures end as participant failures with their code, through `evaluator evaluate --json`.

Bundles refused before any container starts: manifests that are nested too deeply, names
that only pass a `^...$` check, and paths with control characters.
"""

from __future__ import annotations

import json

import pytest

from evaluator.cli import main
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def evaluate(capsys, bundle, features, labels, task: str = "classification") -> tuple[int, dict]:
    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", task, "--json"])
    return code, json.loads(capsys.readouterr().out)


def manifest_bundle(tmp_path, name: str, text: bytes):
    return fx.tar_gz(tmp_path / "bundle.tar.gz", {name: text, "model.joblib": b"", "predict.py": b""})


NESTED = {
    "yaml block mappings": b"name: m\nversion: '1'\nframework: sklearn\nmodel: model.joblib\nx:\n"
                           + b"".join(b" " * (i + 1) + b"k:\n" for i in range(340)),
    "yaml flow sequences": b"name: m\nversion: '1'\nframework: sklearn\nmodel: model.joblib\nx: "
                           + b"[" * 20000 + b"]" * 20000 + b"\n",
}


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_deeply_nested_yaml_manifest_is_bundle_invalid(capsys, tmp_path, images_built, kind):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    bundle = manifest_bundle(tmp_path, "evaluator.yaml", NESTED[kind])

    code, record = evaluate(capsys, bundle, features, labels)

    assert code == 1 and record["status"] == "failed"
    assert record["failure"]["code"] == "bundle_invalid"
    assert "nested" in record["failure"]["message"]


def test_deeply_nested_json_manifest_is_bundle_invalid(capsys, tmp_path, images_built):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    text = (b'{"name": "m", "version": "1", "framework": "sklearn", "model": "model.joblib", "x": '
            + b"[" * 30000 + b"]" * 30000 + b"}")
    bundle = manifest_bundle(tmp_path, "evaluator.json", text)

    code, record = evaluate(capsys, bundle, features, labels)

    assert code == 1 and record["failure"]["code"] == "bundle_invalid"
    assert "nested" in record["failure"]["message"]


@pytest.mark.parametrize("field, value", [
    ("name", "model\n"), ("version", "1.0\n"), ("predict", "predict.py:predict\n"),
    ("predict", "predict.py\x00:predict"), ("model", "model.joblib\x00.txt"), ("model", "model.joblib\n"),
])
def test_names_and_paths_must_match_entirely(capsys, tmp_path, images_built, field, value):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    document = {"name": "m", "version": "1", "framework": "sklearn", "model": "model.joblib",
                "predict": "predict.py:predict", field: value}
    bundle = manifest_bundle(tmp_path, "evaluator.json", json.dumps(document).encode())

    code, record = evaluate(capsys, bundle, features, labels)

    assert code == 1 and record["status"] == "failed"
    assert record["failure"]["code"] == "bundle_invalid", record["failure"]
    message = record["failure"]["message"]
    assert field in message and "\n" not in message and "\x00" not in message
