"""A worker's sandbox shows no run id, benchmark or participant in its mount table (live stack)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.conftest import BIN, ROOT
from tests.integration.helpers import tar_bundle

pytestmark = pytest.mark.integration

REPORTS_MOUNTS = """
import json, sys
import numpy as np

def predict(batch):
    print("MOUNTINFO " + json.dumps(open("/proc/self/mountinfo").read()), file=sys.stderr, flush=True)
    return np.zeros(len(batch), dtype=int)
"""


def test_the_mount_table_names_no_run_benchmark_or_participant(stack, images_built, tmp_path):
    # Given a participant's model that reports its mount table in its log
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification"})
    manifest = b"name: mounts\nversion: 1\nframework: sklearn\nmodel: model.bin\npredict: predict.py:predict\n"
    bundle = tmp_path / "mounts.tar.gz"
    bundle.write_bytes(tar_bundle({"evaluator.yaml": manifest, "model.bin": b"",
                                   "predict.py": REPORTS_MOUNTS.encode()}))
    env = {**os.environ, **stack.config.to_env(), "EVALUATOR_API_URL": stack.url, "EVALUATOR_TOKEN": alice}

    # When it runs on the worker
    result = subprocess.run([str(BIN / "evaluator"), "submit", str(bundle), "--benchmark", "iris", "--wait", "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout, result.stderr, stack.log_tail())
    run = json.loads(result.stdout)
    log = stack.call("GET", f"/v1/runs/{run['id']}/logs", admin).text
    mountinfo = json.loads(next(line for line in log.splitlines() if line.startswith("MOUNTINFO "))[10:])

    # Then neither the run, its submission, benchmark nor participant appears in it
    for secret in (run["id"], run["id"].replace("-", ""), run["submission"], "iris", "alice"):
        assert secret not in mountinfo, secret
    roots = {fields[4]: fields[3] for fields in (line.split() for line in mountinfo.splitlines())}
    assert {"/model", "/data"} <= set(roots)
