"""Prediction-file benchmarks, baselines, the freeze and the board's history, on the live stack.

A participant reads the features through a presigned GET, writes a predictions CSV and uploads
it by plain HTTP to the grant; the S3 event starts a run that no sandbox takes part in.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from evaluator.tokens import create_token
from tests.e2e.conftest import BIN, ROOT
from tests.e2e.test_pipeline import FINAL, run_of

pytestmark = pytest.mark.integration

ROWS = 200
ONLY_PREDICTIONS = {"id": "iris", "task": "classification", "settings": {"submission_kinds": ["predictions"]}}


@pytest.fixture
def stack(emptied_shared_stack):
    """The module's one stack, emptied before each test."""
    return emptied_shared_stack


def csv_of(rows: list[tuple]) -> bytes:
    return ("row_id,prediction\n" + "".join(f"{i},{p}\n" for i, p in rows)).encode()


def answers(labels, wrong: int) -> list[tuple]:
    """The true labels of every row, `wrong` of them replaced by another class."""
    ids, targets = labels.column("row_id").to_pylist(), labels.column("target").to_pylist()
    return [(i, (t + 1) % 3 if n < wrong else t) for n, (i, t) in enumerate(zip(ids, targets))]


def post_csv(stack, token: str, data: bytes, name: str = "preds", **extra) -> dict:
    """Ask for a POST grant for preds.csv and upload it with plain requests, as a browser form would."""
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", token,
                       json={"name": name, "filename": "preds.csv", **extra})
    assert grant.status_code == 201, grant.text
    upload = grant.json()["upload"]
    assert upload["method"] == "post"
    stored = requests.post(upload["url"], data=upload["fields"], files={"file": ("preds.csv", data)}, timeout=30)
    assert stored.status_code in (200, 201, 204), stored.text
    assert grant.json()["submission"]["kind"] == "predictions"
    return grant.json()["submission"]


def finished(stack, token: str, submission: dict) -> dict:
    run_id = run_of(stack, token, submission["id"])
    return stack.wait_for(f"/v1/runs/{run_id}", token, lambda r: r["status"] in FINAL, 120)


def board(stack, token: str, **params) -> dict:
    response = stack.call("GET", "/v1/benchmarks/iris/leaderboard", token, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_features_by_presigned_get_then_a_csv_by_plain_http_is_scored_without_a_sandbox(stack):
    admin, alice, labels = stack.competition(ONLY_PREDICTIONS, rows=ROWS)

    features = stack.call("GET", "/v1/benchmarks/iris/features", alice)
    assert features.status_code == 200, features.text
    body = features.json()
    table = pq.read_table(io.BytesIO(requests.get(body["url"], timeout=30).content))
    assert table.column_names == ["row_id", "f0", "f1", "f2", "f3"] and table.num_rows == ROWS == body["rows"]
    # The URL reads the features only: the same signature does not open the labels next to them.
    assert "features" in body["url"]
    assert requests.get(body["url"].replace("features.parquet", "labels.parquet"), timeout=30).status_code == 403
    assert stack.call("GET", "/v1/benchmarks/iris/features").status_code == 401

    # A bundle is refused up front with its own code; the file is 10 wrong rows of 200.
    refused = stack.call("POST", "/v1/benchmarks/iris/submissions", alice, json={"name": "m"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "kind_not_accepted", refused.text
    assert "prediction files" in refused.json()["error"]["message"]

    run = finished(stack, alice, post_csv(stack, alice, csv_of(answers(labels, wrong=10))))
    assert run["status"] == "succeeded", run
    assert run["kind"] == "predictions" and run["baseline"] is False
    assert run["metrics"]["metrics"]["accuracy"] == pytest.approx(190 / 200, abs=1e-4)
    managed = stack.call("GET", f"/v1/runs/{run['id']}", admin).json()
    assert managed["metrics"]["metrics"]["accuracy"] == 190 / 200
    assert managed["provenance"]["kind"] == "predictions" and "image" not in managed["provenance"]
    assert managed["timestamps"]["running"] is None          # no sandbox stage at all
    assert [e["participant"] for e in board(stack, alice)["entries"]] == ["alice"]

    # A Parquet predictions file by PUT: the same path, probabilities included.
    ids, targets = labels.column("row_id").to_pylist(), labels.column("target").to_pylist()
    table = pa.table({"row_id": ids, "prediction": targets,
                      **{f"proba__{c}": [1.0 if t == c else 0.0 for t in targets] for c in range(3)}})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                       json={"name": "pq", "filename": "preds.parquet", "method": "put", "size": len(data)}).json()
    assert requests.put(grant["upload"]["url"], data=data, headers=grant["upload"]["headers"], timeout=30).ok
    run = finished(stack, alice, grant["submission"])
    assert run["status"] == "succeeded", run
    assert run["metrics"]["metrics"]["accuracy"] == 1.0 and run["metrics"]["metrics"]["log_loss"] < 1e-6


def test_bundle_only_benchmarks_do_not_publish_their_features(stack):
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"}, rows=50)
    denied = stack.call("GET", "/v1/benchmarks/iris/features", alice)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden", denied.text
    refused = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                         json={"name": "p", "filename": "preds.csv"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "kind_not_accepted"
    assert stack.call("GET", "/v1/benchmarks/iris/features", admin).status_code == 200   # managers: any of theirs


def test_hostile_csvs_fail_with_their_code_and_the_worker_keeps_serving(stack):
    admin, alice, labels = stack.competition(ONLY_PREDICTIONS, rows=ROWS)
    good = answers(labels, wrong=0)
    hostile = {
        "huge field": (csv_of([(good[0][0], "x" * 100_000), *good[1:]]), "line 2: a prediction of 100000 bytes"),
        "too many rows": (csv_of([(f"z{n}", 0) for n in range(2 * ROWS + 1025)]), "more than 1424 rows"),
        "bad utf-8": (b"row_id,prediction\n" + good[0][0].encode() + b",\xff\xfe\n", "not valid UTF-8"),
        "duplicate ids": (csv_of([*good, good[0], good[1]]), "2 predictions repeat a row_id already predicted"),
        "huge line": (b"row_id,prediction\n" + b"a" * (3 << 20) + b"\n", "a line longer than 1048576 bytes"),
    }
    for what, (data, words) in hostile.items():
        run = finished(stack, alice, post_csv(stack, alice, data, name=what.replace(" ", "-").replace("8", "eight")))
        assert run["status"] == "failed", (what, run)
        assert run["failure"]["code"] == "predictions_invalid", (what, run)
        assert words in run["failure"]["message"], (what, run["failure"])
    # A Parquet file meets the footer checks before one value is decoded: 5000-byte row ids are refused.
    sink = io.BytesIO()
    pq.write_table(pa.table({"row_id": ["i" * 5000 + str(n) for n in range(ROWS)], "prediction": [0] * ROWS}), sink)
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                       json={"name": "long-ids", "filename": "preds.parquet"}).json()
    upload = grant["upload"]
    assert requests.post(upload["url"], data=upload["fields"], files={"file": ("p.parquet", sink.getvalue())},
                         timeout=30).ok
    run = finished(stack, alice, grant["submission"])
    assert run["status"] == "failed" and run["failure"]["code"] == "predictions_invalid", run
    assert "longer than 1024 bytes" in run["failure"]["message"], run["failure"]
    run = finished(stack, alice, post_csv(stack, alice, csv_of(good), name="good"))
    assert run["status"] == "succeeded" and run["metrics"]["metrics"]["accuracy"] == 1.0, run
    assert all(worker.poll() is None for worker in stack.workers)


def test_cli_submit_of_a_csv_waits_for_its_metrics(stack, tmp_path):
    admin, alice, labels = stack.competition(ONLY_PREDICTIONS, rows=ROWS)
    path = tmp_path / "preds.csv"
    path.write_bytes(csv_of(answers(labels, wrong=20)))
    env = {**os.environ, **stack.config.to_env(), "EVALUATOR_API_URL": stack.url, "EVALUATOR_TOKEN": alice}
    done = subprocess.run([str(BIN / "evaluator"), "submit", str(path), "--benchmark", "iris", "--wait", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and run["metrics"]["metrics"]["accuracy"] == pytest.approx(0.9, abs=1e-4)

    # The admin's baseline by the CLI, and the board as text: a reference line without a rank.
    admin_env = {**env, "EVALUATOR_TOKEN": admin}
    done = subprocess.run([str(BIN / "evaluator"), "submit", str(path), "--benchmark", "iris", "--baseline",
                           "--name", "oracle", "--wait"], cwd=ROOT, env=admin_env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = subprocess.run([str(BIN / "evaluator"), "leaderboard", "iris"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split()[:2] for line in shown.stdout.splitlines()[2:]]
    assert rows == [["1", "alice"], ["base", "admin"]], shown.stdout
    assert "admin (oracle)" in shown.stdout

    # A bundle to this benchmark: one line naming the code, exit 1, nothing uploaded.
    bundle = tmp_path / "model.tar.gz"
    bundle.write_bytes(b"\x1f\x8b" + b"0" * 64)
    refused = subprocess.run([str(BIN / "evaluator"), "submit", str(bundle), "--benchmark", "iris"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "kind_not_accepted" in refused.stderr + refused.stdout, refused
    misnamed = tmp_path / "preds.parquet"
    misnamed.write_bytes(csv_of(answers(labels, wrong=0)))
    refused = subprocess.run([str(BIN / "evaluator"), "submit", str(misnamed), "--benchmark", "iris"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "not a Parquet file" in refused.stderr + refused.stdout, refused


def test_baseline_is_listed_unranked_then_the_freeze_and_the_history(stack):
    admin, alice, labels = stack.competition(ONLY_PREDICTIONS, rows=ROWS)
    bob, _ = create_token("bob", "participant")
    owner, _ = create_token("olga", "owner")

    # A manager's baseline: scored like any run, listed at its score, never ranked, not a participant.
    base = finished(stack, admin, post_csv(stack, admin, csv_of(answers(labels, wrong=0)), name="oracle",
                                           baseline=True))
    assert base["status"] == "succeeded" and base["baseline"] is True
    refused = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                         json={"name": "p", "filename": "preds.csv", "baseline": True})
    assert refused.status_code == 403, refused.text
    assert stack.call("POST", "/v1/benchmarks/iris/submissions", owner,       # not her benchmark
                      json={"name": "p", "filename": "preds.csv", "baseline": True}).status_code == 403
    first = finished(stack, alice, post_csv(stack, alice, csv_of(answers(labels, wrong=40))))
    worse = finished(stack, bob, post_csv(stack, bob, csv_of(answers(labels, wrong=60))))
    assert first["status"] == worse["status"] == "succeeded"
    live = board(stack, bob)
    assert [(e["participant"], e["rank"], e["baseline"]) for e in live["entries"]] == [
        ("admin", None, True), ("alice", 1, False), ("bob", 2, False)]
    assert live["participants"] == 2 and live["entries"][0]["name"] == "oracle" and live["entries"][0]["score"] == 1.0

    # A baseline flag set afterwards by PATCH: bob's run becomes a reference entry; only managers may.
    assert stack.call("PATCH", f"/v1/runs/{worse['id']}", bob, json={"baseline": True}).status_code == 403
    flagged = stack.call("PATCH", f"/v1/runs/{worse['id']}", admin, json={"baseline": True})
    assert flagged.status_code == 200 and flagged.json()["baseline"] is True, flagged.text
    assert [(e["participant"], e["rank"]) for e in board(stack, alice)["entries"]] == [
        ("admin", None), ("alice", 1), ("bob", None)]
    stack.call("PATCH", f"/v1/runs/{worse['id']}", admin, json={"baseline": False})

    # The freeze: from now on alice reads the board as it stood; her own new run shows its new score.
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    frozen_settings = {"submission_kinds": ["predictions"], "freeze_at": before.isoformat() + "Z"}
    assert stack.call("PATCH", "/v1/benchmarks/iris", admin, json={"settings": frozen_settings}).status_code == 200
    better = finished(stack, alice, post_csv(stack, alice, csv_of(answers(labels, wrong=5)), name="better"))
    assert better["status"] == "succeeded"
    assert better["metrics"]["metrics"]["accuracy"] == pytest.approx(195 / 200, abs=1e-4)   # her own run: new
    seen = board(stack, alice)
    assert seen["frozen"] is True and seen["at"] == before.isoformat(timespec="milliseconds") + "Z"
    alices = [e for e in seen["entries"] if e["participant"] == "alice"]
    assert [e["run_id"] for e in alices] == [first["id"]] and alices[0]["score"] == pytest.approx(0.8, abs=1e-4)
    assert board(stack, bob, at=datetime.datetime.now().isoformat())["frozen"] is True   # ?at= cannot see past it
    managed = board(stack, admin)
    assert managed["frozen"] is False
    assert [e["run_id"] for e in managed["entries"] if e["participant"] == "alice"] == [better["id"]]

    # History: ?at= the instant before the freeze gives that board and the rules then in force.
    assert stack.call("PATCH", "/v1/benchmarks/iris", admin,
                      json={"primary_metric": "f1_macro", "settings": frozen_settings}).status_code == 200
    then = board(stack, admin, at=before.isoformat() + "Z")
    assert then["rules"]["metric"] == "accuracy" and then["frozen"] is False
    assert [(e["participant"], e["run_id"]) for e in then["entries"] if not e["baseline"]] == [
        ("alice", first["id"]), ("bob", worse["id"])]
    assert then["entries"][1]["score"] == 0.8                                      # exact, for a manager
    now = board(stack, admin)
    assert now["rules"]["metric"] == "f1_macro"
    # A re-score of prediction-file runs reads their stored (converted) predictions, as for bundles.
    assert stack.call("POST", "/v1/benchmarks/iris/rescore", admin).json()["queued"] == 4
    stack.wait_for("/v1/runs?benchmark=iris", admin, lambda page: page["total"] == 4 and all(
        r["metrics"]["primary_metric"]["name"] == "f1_macro" for r in page["items"]), 60)
    rescored = stack.call("GET", f"/v1/runs/{better['id']}", admin).json()
    assert rescored["metrics"]["primary_metric"]["name"] == "f1_macro"
    assert rescored["metrics"]["metrics"]["accuracy"] == 195 / 200
    earliest = board(stack, admin, at="2000-01-01T00:00:00Z")
    assert earliest["entries"] == [] and earliest["participants"] == 0
