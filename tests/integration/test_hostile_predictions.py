"""Hostile predictions files end predictions_invalid, in bounded memory, and the scorer's host survives.

Every case goes through the scoring entry the worker and `evaluator evaluate` use
(isolated_scoring.score_isolated: a child process with its own memory limit), both as a fresh
interpreter (the CLI) and forked by the scoring server (a worker); a few go
through `evaluator evaluate --json` with a real sandbox, whose predict.py writes the file
itself and leaves with os._exit(0). The peak RSS of the scoring process is measured
(os.wait4 of that child) and must stay under PEAK_BOUND.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator.cli import main
from evaluator.config import Config
from evaluator.errors import MESSAGE_MAX_CHARS, PredictionsInvalid
from evaluator.isolated_scoring import score_isolated
from evaluator.scoring import score_files
from evaluator.settings import Scoring
from tests.integration import hostile_predictions as hostile
from tests.integration import sandbox_fixtures as fx

pytestmark = pytest.mark.integration

PEAK_BOUND = 512 << 20  # the scoring process, for every file the footer and decode checks refuse
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def score(labels, predictions, task: str, tmp_path, *, config: Config | None = None, private_split=None,
          stats: dict | None = None):
    return score_isolated(Scoring(task, private_split=private_split), labels, predictions,
                          work_dir=tmp_path / "scoring", config=config or Config(), stats=stats)


def assert_clean(message: str) -> None:
    assert not CONTROL.search(message) and len(message) <= MESSAGE_MAX_CHARS, message[:200]


@pytest.fixture(scope="module")
def forking(tmp_path_factory):
    """A Config whose scorings are forked by this process's scoring server, as in a worker (STANDBY.keep)."""
    from evaluator.scoring_standby import STANDBY

    config = Config(work_dir=str(tmp_path_factory.mktemp("forking")), scoring_standby=1)
    STANDBY.keep(config)
    yield config
    STANDBY.close()


@pytest.mark.parametrize("scorer", ["fresh interpreter", "forked by the server"])
@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_every_hostile_file_ends_predictions_invalid_within_the_memory_bound(tmp_path, case, scorer, request):
    builder, task = hostile.CASES[case]
    labels, predictions = builder(tmp_path)
    stats: dict = {}
    config = request.getfixturevalue("forking") if scorer == "forked by the server" else None

    with pytest.raises(PredictionsInvalid) as refused:
        score(labels, predictions, task, tmp_path, config=config, stats=stats)
    if config is not None:  # NOTE: the server's child, not a fresh interpreter
        from evaluator.scoring_standby import STANDBY

        server = STANDBY.server(config)
        result = json.loads((tmp_path / "scoring" / "scoring-result.json").read_text())
        assert server is not None and server.alive() and result["parent"] == server.pid

    assert_clean(refused.value.message)
    assert 0 < stats["peak_rss_bytes"] < PEAK_BOUND, stats


@pytest.mark.parametrize("case", ["dictionary_bomb", "huge_row_id", "corrupt_page", "nul_in_row_id",
                                  "duplicate_columns"])
def test_hostile_files_are_refused_under_a_private_split_too(tmp_path, case):
    builder, task = hostile.CASES[case]
    labels, predictions = builder(tmp_path)
    stats: dict = {}

    with pytest.raises(PredictionsInvalid) as refused:
        score(labels, predictions, task, tmp_path, private_split=("bench", 0.5), stats=stats)

    assert_clean(refused.value.message)
    assert stats["peak_rss_bytes"] < PEAK_BOUND


def test_the_bombs_are_refused_by_name_before_they_are_decoded(tmp_path):
    labels, predictions = hostile.dictionary_bomb(tmp_path / "a")
    with pytest.raises(PredictionsInvalid, match="longer than 1024 bytes"):
        score(labels, predictions, "classification", tmp_path / "a")
    labels, predictions = hostile.huge_row_id(tmp_path / "b")
    with pytest.raises(PredictionsInvalid, match="'row_id' holds values longer than 1024 bytes"):
        score(labels, predictions, "classification", tmp_path / "b")


def test_a_dictionary_that_hides_one_long_value_hits_the_memory_limit_not_the_worker(tmp_path):
    # Given a dictionary whose average value is short (the footer checks pass) but whose first value,
    # 1 MiB long, is what every row refers to: 64 GiB once decoded
    n = 65_536
    ids = pa.array(np.arange(n, dtype=np.int64))
    pq.write_table(pa.table({"row_id": ids, "target": pa.array([f"c{i % 3}" for i in range(n)])}),
                   tmp_path / "labels.parquet")
    dictionary = pa.array(["B" * (1 << 20)] + [str(i) for i in range(2047)])
    prediction = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), dictionary)
    pq.write_table(pa.table({"row_id": ids, "prediction": prediction}), tmp_path / "predictions.parquet",
                   store_schema=False, compression="zstd", row_group_size=8192)
    limit = 384 << 20
    stats: dict = {}

    # When it is scored with a 384 MiB limit
    with pytest.raises(PredictionsInvalid) as refused:
        score(tmp_path / "labels.parquet", tmp_path / "predictions.parquet", "classification", tmp_path,
              config=Config(scoring_memory_bytes=limit), stats=stats)

    # Then the run ends predictions_invalid, saying so, and the scoring process stayed within its limit
    assert "exceeded the scoring memory limit (384 MiB)" in refused.value.message
    assert stats["peak_rss_bytes"] < limit + (128 << 20)  # NOTE: RLIMIT_DATA leaves out code and stacks


def test_honest_predictions_score_the_same_isolated_and_in_process(tmp_path):
    n = 5000
    rng = np.random.default_rng(3)
    ids = [f"id-{i:05d}" for i in range(n)]
    y = rng.integers(0, 3, n)
    pq.write_table(pa.table({"row_id": ids, "target": y}), tmp_path / "labels.parquet")
    proba = rng.dirichlet(np.ones(3), n)
    order = rng.permutation(n)
    pq.write_table(pa.table({"row_id": pa.array(ids).take(order), "prediction": proba.argmax(axis=1)[order],
                             **{f"proba__{k}": proba[order, k] for k in range(3)}}), tmp_path / "predictions.parquet",
                   row_group_size=1000)
    stats: dict = {}

    document, private = score(tmp_path / "labels.parquet", tmp_path / "predictions.parquet", "classification",
                              tmp_path, stats=stats)

    expected = score_files("classification", tmp_path / "labels.parquet", tmp_path / "predictions.parquet")
    assert private is None and document["metrics"] == expected["metrics"]
    assert stats["exit"] == 0 and stats["peak_rss_bytes"] < PEAK_BOUND


# --- through `evaluator evaluate --json`, with a real sandbox ----------------------------

WRITES_AND_EXITS = """
import os
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

def predict(batch):
    n = len(batch)
    ids = [f"r{i:05d}" for i in range(n)]
%(body)s
    os._exit(0)
"""

SANDBOX_CASES = {
    "dictionary bomb": ("""
    value = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["b" * 65536]))
    pq.write_table(pa.table({"row_id": ids, "prediction": value}), "/output/predictions.parquet",
                   compression="zstd", row_group_size=16, store_schema=False)
""", "longer than 1024 bytes"),
    "65,536 rows for 120": ("""
    value = pa.DictionaryArray.from_arrays(pa.array(np.zeros(65536, dtype=np.int32)), pa.array(["b" * 65536]))
    ids = pa.array([f"r{i:05d}" for i in range(65536)])
    pq.write_table(pa.table({"row_id": ids, "prediction": value}), "/output/predictions.parquet",
                   compression="zstd", row_group_size=1024, store_schema=False)
""", "has 65536 rows but there are 120 rows to predict"),
    "64 MiB row id": ("""
    ids[0] = "x" * (64 << 20)
    pq.write_table(pa.table({"row_id": ids, "prediction": np.zeros(n, dtype=np.int64)}),
                   "/output/predictions.parquet", compression="zstd", use_dictionary=False)
""", "longer than 1024 bytes"),
    "duplicate columns": ("""
    table = pa.Table.from_arrays([pa.array(ids), pa.array(np.zeros(n, dtype=np.int64)),
                                  pa.array(np.zeros(n, dtype=np.int64))], names=["row_id", "prediction", "prediction"])
    pq.write_table(table, "/output/predictions.parquet")
""", "more than one column named 'prediction'"),
    "NUL and escapes in row ids": ("""
    ids[0], ids[1] = "r\\x00\\x00", "\\x1b[2J\\x1b]0;owned\\x07run succeeded"
    pq.write_table(pa.table({"row_id": ids, "prediction": np.zeros(n, dtype=np.int64)}), "/output/predictions.parquet")
""", "not in the labels"),
}


@pytest.mark.docker
@pytest.mark.parametrize("case", sorted(SANDBOX_CASES))
def test_a_model_that_writes_a_hostile_file_ends_predictions_invalid(capsys, tmp_path, images_built, case):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    body, expected = SANDBOX_CASES[case]
    bundle = fx.predict_bundle(tmp_path / "hostile.tar.gz", WRITES_AND_EXITS % {"body": body})

    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", "classification", "--json"])
    record = json.loads(capsys.readouterr().out)

    assert code == 1 and record["status"] == "failed", record["failure"]
    assert record["failure"]["code"] == "predictions_invalid", record["failure"]
    assert expected in record["failure"]["message"]
    assert_clean(record["failure"]["message"])
    assert record["provenance"]["scoring"]["peak_rss_bytes"] < PEAK_BOUND


@pytest.mark.docker
@pytest.mark.parametrize("returned, sentence", [
    ("np.zeros(len(batch) - 1, dtype=int)", "returned 119 predictions for 120 rows"),
    ("np.zeros(len(batch) + 1, dtype=int)", "returned 121 predictions for 120 rows"),
    ("{'prediction': np.zeros(len(batch)), 'proba': np.zeros((len(batch), 2)), 'classes': [0, 1, 2]}",
     "probabilities have shape (120, 2); expected (120, 3)"),
    ("[object()] * len(batch)", "rows 0 to 119"),
])
def test_a_predict_that_returns_the_wrong_shape_ends_predictions_invalid_with_its_sentence(
        capsys, tmp_path, images_built, returned, sentence):
    images_built("sklearn")
    _, _, features, labels = fx.classification_data(tmp_path)
    bundle = fx.predict_bundle(tmp_path / "short.tar.gz", f"import numpy as np\ndef predict(batch):\n"
                                                          f"    return {returned}\n")

    code = main(["evaluate", "--bundle", str(bundle), "--features", str(features), "--labels", str(labels),
                 "--task", "classification", "--json"])
    record = json.loads(capsys.readouterr().out)

    assert code == 1 and record["failure"]["code"] == "predictions_invalid", record["failure"]
    assert sentence in record["failure"]["message"]


def test_a_failure_message_quoting_model_output_is_stored_escaped_and_capped(db):
    from evaluator import runs
    from evaluator.storage.models import Benchmark, Dataset, Run, Submission

    dataset = Dataset.create(name="d", version="1", features_key="f", labels_key="l")
    Benchmark.create(id="b", title="b", dataset=dataset, task="classification", primary_metric="accuracy",
                     direction="maximize", owner="admin")
    submission = Submission.create(benchmark="b", owner="alice", name="m", version="1", bucket="x",
                                   object_key="bundles/b/alice/m/1/x.tar.gz", status="uploaded")
    run = Run.create(submission=submission, benchmark="b", owner="alice")
    # A row id with a NUL (PostgreSQL refuses it), escapes, and 64 MiB of it
    message = "1 prediction has a row_id that is not in the labels (e.g. row_id 'r\x00\x1b[2J" + "x" * (64 << 20)

    assert runs.finish(str(run.id), status="failed", failure={"code": "predictions_invalid", "message": message})

    stored = Run.get_by_id(run.id).failure_message
    assert stored.startswith("1 prediction has a row_id that is not in the labels (e.g. row_id 'r\\x00\\x1b[2J")
    assert len(stored) <= MESSAGE_MAX_CHARS
    assert_clean(stored)
