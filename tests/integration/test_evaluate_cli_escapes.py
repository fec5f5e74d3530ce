"""`evaluator evaluate` as a subprocess: a model's escapes, in its log or its row ids, are shown, never obeyed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import BIN
from tests.integration import sandbox_fixtures as fx
from tests.terminal_checks import HOSTILE_SOURCE_LITERAL, hostile_log_predict, unsafe_characters

pytestmark = [pytest.mark.integration, pytest.mark.docker]

ROOT = BIN.parents[1]

# Logs the hostile text (and raw bytes around an ESC), then fails with it as the exception message.
LOGS_AND_RAISES = hostile_log_predict("raise RuntimeError(TEXT)")

# Writes predictions whose row ids carry the hostile text, and exits before the program can.
HOSTILE_ROW_IDS = f"""
import os
import pyarrow as pa
import pyarrow.parquet as pq

TEXT = {HOSTILE_SOURCE_LITERAL}

def predict(batch):
    ids = [TEXT + str(i) for i in range(len(batch))]
    pq.write_table(pa.table({{"row_id": ids, "prediction": [0] * len(batch)}}), "/output/predictions.parquet")
    os._exit(0)
"""


def evaluate(tmp_path, source: str, *extra: str) -> subprocess.CompletedProcess:
    _, _, features, labels = fx.classification_data(tmp_path / "data")
    bundle = fx.predict_bundle(tmp_path / "hostile.tar.gz", source)
    env = {**os.environ, "EVALUATOR_WORK_DIR": str(tmp_path / "work"), "EVALUATOR_SANDBOX_TIMEOUT_S": "60"}
    return subprocess.run([str(BIN / "evaluator"), "evaluate", "--bundle", str(bundle), "--features", str(features),
                           "--labels", str(labels), "--task", "classification", *extra],
                          cwd=ROOT, env=env, capture_output=True, timeout=300)


def assert_clean(result: subprocess.CompletedProcess) -> None:
    assert b"Traceback (most recent call last)" not in result.stderr.split(b"--- sandbox log")[0]
    assert unsafe_characters(result.stdout) == [], result.stdout
    assert unsafe_characters(result.stderr) == [], result.stderr


def test_a_failing_models_log_tail_and_error_are_escaped(tmp_path, images_built):
    images_built("sklearn")

    result = evaluate(tmp_path, LOGS_AND_RAISES)

    assert result.returncode == 1
    assert_clean(result)
    err = result.stderr.decode()
    line = next(raw for raw in err.split("\n") if "HOSTILE-BEGIN" in raw)
    assert "HOSTILE-END" in line and "\\x1b[2J" in line and "\\x0d" in line and "\\u202e" in line
    assert "raw \ufffd\\x9b\\x1bc bytes" in err
    assert err.rstrip("\n").split("\n")[-1].startswith("error: sandbox_error: ")


def test_json_output_is_printable_ascii_and_keeps_the_log_exact(tmp_path, images_built):
    images_built("sklearn")
    log = tmp_path / "sandbox.log"

    result = evaluate(tmp_path, LOGS_AND_RAISES, "--json", "--log", str(log))

    assert result.returncode == 1
    assert_clean(result)
    assert result.stdout.decode().isascii()
    assert json.loads(result.stdout)["failure"]["code"] == "sandbox_error"
    assert b"\x1b[2J" in log.read_bytes()  # the file holds what the model wrote; only the terminal is protected


def test_hostile_row_ids_in_a_failure_message_stay_on_one_escaped_line(tmp_path, images_built):
    images_built("sklearn")

    result = evaluate(tmp_path, HOSTILE_ROW_IDS)

    assert result.returncode == 1
    assert_clean(result)
    last = result.stderr.decode().rstrip("\n").split("\n")[-1]
    assert last.startswith("error: predictions_invalid: "), last
