"""What a model finds in /dev and /proc/self/mountinfo: no writable shared memory to hoard, no host layout.

Through `evaluator evaluate` (the same evaluate_bundle and sandbox as the worker),
with a hostile predict.py that reports what it could do as one JSON line in its log.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from evaluator.sandbox.spec import Limits
from tests.conftest import BIN
from tests.integration import sandbox_fixtures as fx

pytestmark = [pytest.mark.integration, pytest.mark.docker]

ROOT = BIN.parents[1]

PROBES_DEVICES = """
import ctypes, ctypes.util, json, os, shutil, subprocess, sys
import numpy as np

def _try(action):
    try:
        return action()
    except OSError as ex:
        return f"{type(ex).__name__}: {ex}"

def _fill(path, cap=512 << 20):
    written = 0
    try:
        with open(path, "wb") as handle:
            while written < cap:
                handle.write(b"x" * (1 << 20))
                handle.flush()
                written += 1 << 20
        return {"written": written, "error": None}
    except OSError as ex:
        return {"written": written, "error": f"{type(ex).__name__}: {ex}"}
    finally:
        _try(lambda: os.remove(path))

def _exec_from(folder):
    def run():
        target = os.path.join(folder, "true")
        shutil.copy("/bin/true", target)
        os.chmod(target, 0o755)
        return f"ran, exit {subprocess.run([target]).returncode}"
    return _try(run)

def _mq_open():
    librt = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)
    fd = librt.mq_open(b"/hoard", os.O_CREAT | os.O_RDWR, 0o600, None)
    return "opened" if fd >= 0 else f"refused: {os.strerror(ctypes.get_errno())}"

def predict(batch):
    findings = {
        "shm_fill": _fill("/dev/shm/hoard"),
        "shm_exec": _exec_from("/dev/shm"),
        "mqueue_file": _try(lambda: open("/dev/mqueue/hoard", "w").close() or "created"),
        "mq_open": _mq_open(),
        "mountinfo": open("/proc/self/mountinfo").read(),
        "cgroup": open("/proc/self/cgroup").read(),
    }
    print("DEVICES " + json.dumps(findings), file=sys.stderr, flush=True)
    return np.zeros(len(batch), dtype=int)
"""


@pytest.fixture
def findings(tmp_path, images_built, sandbox_work_dir):
    """Run the probe through the CLI; return (its findings, the run record, the work dir)."""
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path / "caller-data")
    bundle = fx.predict_bundle(tmp_path / "probe.tar.gz", PROBES_DEVICES)
    work_dir, log = sandbox_work_dir, tmp_path / "sandbox.log"
    env = {**os.environ, "EVALUATOR_WORK_DIR": str(work_dir), "EVALUATOR_SANDBOX_MEMORY": "512m"}
    result = subprocess.run([str(BIN / "evaluator"), "evaluate", "--bundle", str(bundle), "--features", str(features),
                             "--labels", str(labels), "--task", "classification", "--json", "--log", str(log)],
                            cwd=ROOT, env=env, capture_output=True, timeout=300)
    record = json.loads(result.stdout)
    assert record["status"] == "succeeded", (record["failure"], log.read_bytes()[-3000:])
    line = next(raw for raw in log.read_text().splitlines() if raw.startswith("DEVICES "))
    return json.loads(line[len("DEVICES "):]), record, work_dir


def test_dev_shm_is_small_and_noexec_and_dev_mqueue_is_not_writable(findings):
    found, _, _ = findings

    fill = found["shm_fill"]
    assert fill["written"] <= Limits().shm_bytes and "No space left on device" in fill["error"]
    assert "Permission denied" in found["shm_exec"]  # noexec: nothing runs from shared memory
    assert "Read-only file system" in found["mqueue_file"]
    assert found["mq_open"].startswith("refused")  # RLIMIT_MSGQUEUE 0: no POSIX queue can hold bytes


def test_mountinfo_names_no_run_and_no_caller_path(findings, tmp_path):
    found, record, work_dir = findings
    mountinfo, run_id = found["mountinfo"], record["provenance"]["run_id"]

    assert run_id not in mountinfo and run_id.split("-")[-1] not in mountinfo
    assert str(tmp_path / "caller-data") not in mountinfo  # where the caller's files live stays unseen
    assert tmp_path.name not in mountinfo  # nor the test's own folder name
    # The bind mounts show the work dir (Docker shows host paths; see README) and an opaque folder name only.
    roots = {fields[4]: fields[3] for fields in (line.split() for line in mountinfo.splitlines())}
    for mount in ("/model", "/data"):
        relative = roots[mount].rsplit(work_dir.name + "/", 1)[-1]
        folder, _, rest = relative.partition("/")
        assert folder == "runs" and rest.split("/")[0].isalnum() and rest.endswith(mount[1:]), roots[mount]
    # A private cgroup namespace: cgroup paths do not name the container either.
    assert all(line.rsplit(":", 1)[-1] == "/" for line in found["cgroup"].splitlines()), found["cgroup"]
