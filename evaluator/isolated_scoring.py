"""Score untrusted predictions in a child process with its own memory limit: a bomb ends the run, not the worker.

The model wrote predictions.parquet byte for byte. The scorer bounds what it decodes
(evaluator.scoring.footer, sources.DecodeBudget), and this module bounds the rest: the
scoring runs in `python -m evaluator.isolated_scoring`, which sets its own RLIMIT_DATA
before it opens a file, so whatever the predictions make it allocate, the worker's memory
is untouched. In a worker the child is forked by a scoring server whose imports are done
(evaluator.scoring_standby, evaluator.scoring_server): it takes its job, sets its limits, and scores that
one run. Every way the child can end is mapped:

- documents written: the run is scored;
- a participant failure (PredictionsInvalid and the like): that failure, as the child named it;
- out of memory (MemoryError, Arrow's allocation failure, std::bad_alloc, SIGKILL): predictions_invalid,
  saying the predictions exceeded the scoring memory limit;
- any other exception or crash while reading or scoring the predictions: predictions_invalid;
- a problem with the labels (EvaluatorError that is not a RunFailure): that error, code internal;
- the child could not start, or was stopped by SIGTERM/SIGINT: InfrastructureError (retried);
- the scoring server died before it forked the child: started again once, then InfrastructureError;
  it died while the child scored (the child's exit status is lost) and left no result: InfrastructureError.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from evaluator import after_run
from evaluator.config import Config
from evaluator.errors import EvaluatorError, InfrastructureError, PredictionsInvalid, RunCancelled, RunFailure
from evaluator.scoring_client import log_tail
from evaluator.scoring_standby import STANDBY, STANDBY_ARG, Scorer
from evaluator.settings import Scoring

logger = logging.getLogger(__name__)

_POLL_S = 0.1  # how often the parent looks at the clock and the cancel flag (the child's end wakes it)
_STARTED = "started"
_STDERR_TAIL = 4096
_MEMORY_WORDS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "ArrowMemoryError", "out of memory")


def score_isolated(scoring: Scoring, labels: Path, predictions: Path, *,
                   work_dir: Path, config: Config, expected_rows: int | None = None,
                   should_cancel: Callable[[], bool] | None = None,
                   stats: dict | None = None, csv_source: Path | None = None,
                   plot_data: dict | None = None) -> tuple[dict, dict | None]:
    """Score like splits.score_parts, in a child process limited to config.scoring_memory_bytes.

    `stats`, when given, receives the child's peak RSS, its duration and how it ended; `plot_data` the
    plots' summaries (bounded in size by evaluator.plots.stats), as score_parts gives them.
    `csv_source`, when given, is a participant's predictions CSV: the child converts it to
    `predictions` (bounded: evaluator.scoring.csv_predictions) under the same limits, then scores that.

    Raises:
        PredictionsInvalid: the predictions are invalid, or made the scorer exceed its limits.
        EvaluatorError: the labels could not be scored (code internal).
        InfrastructureError: the scoring process could not start or was stopped from outside.
        RunCancelled: should_cancel() said so while scoring.
        ValueError: an unknown task or metric (a benchmark configuration error).
    """
    from evaluator.scoring.files import check_task_metrics

    # NOTE: ours to get right, so checked here, not in the child
    check_task_metrics(scoring.task, scoring.metric_list, scoring.primary_metric)
    work_dir.mkdir(parents=True, exist_ok=True)
    request_path, result_path = work_dir / "scoring-request.json", work_dir / "scoring-result.json"
    stderr_path = work_dir / "scoring-stderr.txt"
    result_path.unlink(missing_ok=True)
    request = {"scoring": scoring.to_dict(), "labels": str(labels), "predictions": str(predictions),
               "work_dir": str(work_dir), "expected_rows": expected_rows, "memory_bytes": config.scoring_memory_bytes,
               "csv_source": str(csv_source) if csv_source is not None else None}
    request_path.write_text(json.dumps(request))
    started = time.monotonic()
    child = STANDBY.start(config, request_path, result_path)
    try:
        status, peak_kb = _wait(child, config.scoring_timeout_s, should_cancel)
    finally:
        _keep_log(child, stderr_path)
        after_run.defer(lambda: STANDBY.refill(config))  # a dead server's replacement once this run is recorded
    seconds = time.monotonic() - started
    result = _read_result(result_path)
    # NOTE: the child's own high-water mark; rusage's ru_maxrss starts at the size of the process the
    # child came from (the worker before exec, the server at fork), so it is only the fallback
    peak = result.get("peak_rss_bytes") or peak_kb * 1024
    if stats is not None:
        stats.update(peak_rss_bytes=peak, seconds=round(seconds, 3), exit=status)
    logger.info("Scoring process ended %s after %.2fs, peak RSS %d MiB", status, seconds, peak >> 20)
    documents = _outcome(status, result, stderr_path, config)
    if plot_data is not None and isinstance(result.get("plots"), dict):
        plot_data.update(result["plots"])
    return documents


def _keep_log(child: Scorer, stderr_path: Path) -> None:
    """Move the child's own log beside the run's work files (where a crash's tail is read from)."""
    try:
        shutil.move(str(child.log_path), str(stderr_path))
    except OSError:
        child.log_path.unlink(missing_ok=True)


def _wait(child: Scorer, timeout_s: float, should_cancel: Callable[[], bool] | None) -> tuple[int | None, int]:
    """The child's end (exit status, peak RSS KiB); kill it on timeout or cancel.

    Between looks it waits on the child's end itself (a pidfd, the server's report), which wakes it the
    moment the child exits: the end of scoring is on the run's critical path.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        ended = child.poll(_POLL_S)
        if ended is not None:
            return ended
        if time.monotonic() > deadline:
            child.kill()
            raise PredictionsInvalid(f"scoring the predictions took longer than {timeout_s:g} s; the scoring "
                                     "limit stopped it")
        if should_cancel is not None and should_cancel():
            child.kill()
            raise RunCancelled("the run was cancelled while its predictions were scored")


def _outcome(status: int | None, result: dict, stderr_path: Path, config: Config) -> tuple[dict, dict | None]:
    if "documents" in result:
        document, private = result["documents"]
        return document, private
    if "failure" in result:
        failure = result["failure"]
        if failure["kind"] == "run_failure":  # NOTE: scoring raises no other participant failure
            raise PredictionsInvalid(failure["message"])
        if failure["kind"] == "memory":
            raise _memory_exceeded(config)
        raise EvaluatorError(failure["message"])  # the labels: code internal
    tail = log_tail(stderr_path, _STDERR_TAIL)
    if result.get("stage") != _STARTED:
        raise InfrastructureError(f"the scoring process failed before it read the predictions (exit {status}): "
                                  f"{tail[-300:]}")
    if status is None:
        raise InfrastructureError("the scoring server exited while it scored; the scoring's exit status is lost")
    if status < 0 and -status in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        raise InfrastructureError(f"the scoring process was stopped by {signal.Signals(-status).name}")
    logger.warning("Scoring process died (exit %s) while reading predictions: %s", status, tail)
    if (status < 0 and -status in (signal.SIGKILL, signal.SIGABRT)) or any(word in tail for word in _MEMORY_WORDS):
        raise _memory_exceeded(config)
    name = signal.Signals(-status).name if status < 0 else f"exit status {status}"
    raise PredictionsInvalid(f"the scoring process crashed while it read the predictions ({name}); "
                             "the file is malformed")


def _memory_exceeded(config: Config) -> PredictionsInvalid:
    return PredictionsInvalid(f"the predictions exceeded the scoring memory limit ({config.scoring_memory_bytes >> 20} "
                              "MiB) while they were decoded and scored; write one short row id and prediction per row")


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


# --- the child ---------------------------------------------------------------------------


def _write(path: Path, body: dict) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(body, allow_nan=False))
    os.replace(partial, path)


def _limit_memory(limit: int) -> None:
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def child_main(argv: list[str]) -> int:
    """Run one scoring request; the parent reads the result file, never this process's output."""
    import pyarrow as pa

    from evaluator.splits import score_parts

    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text("utf-8"))
    os.chdir(request["work_dir"])
    _limit_memory(int(request["memory_bytes"]))
    process = {"pid": os.getpid(), "parent": os.getppid()}  # which process scored it (the server's fork or not)
    _write(result_path, {"stage": _STARTED, **process})
    plots: dict = {}
    try:
        if request.get("csv_source"):
            from evaluator.scoring.csv_predictions import CsvLimits, convert, max_rows_for

            convert(Path(request["csv_source"]), Path(request["predictions"]),
                    caps=CsvLimits(max_rows=max_rows_for(request["expected_rows"])),
                    with_proba=request["scoring"]["task"] == "classification")
        documents = score_parts(Scoring.from_dict(request["scoring"]), Path(request["labels"]),
                                Path(request["predictions"]), work_dir=Path(request["work_dir"]),
                                expected_rows=request["expected_rows"], plot_data=plots)
        body: dict = {"documents": list(documents), "plots": plots}
    except RunFailure as ex:
        body = {"failure": {"kind": "run_failure", "code": ex.code, "message": ex.message}}
    except (MemoryError, pa.ArrowMemoryError):
        body = {"failure": {"kind": "memory"}}
    except EvaluatorError as ex:  # NOTE: raised for the labels, which the platform vouches for
        body = {"failure": {"kind": "internal", "message": ex.message}}
    except Exception as ex:  # the loop boundary of this process: whatever the predictions caused
        import traceback

        traceback.print_exc()
        memory = any(word in f"{type(ex).__name__} {ex}" for word in _MEMORY_WORDS)
        body = {"failure": {"kind": "memory"}} if memory else {"failure": {
            "kind": "run_failure", "code": PredictionsInvalid.code,
            "message": f"the predictions could not be scored: {type(ex).__name__}: {ex}"}}
    _write(result_path, {**body, **process, "peak_rss_bytes": _peak_rss()})
    return 0


def _peak_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")), 0)


def standby_main(log_path: Path) -> int:
    """Import what scoring needs, then wait for one job line on stdin: [request path, result path].

    The parent closes stdin after the line, and a parent that dies closes it too: an
    empty line ends this process without scoring anything, and it removes its own log.
    """
    from evaluator.scoring_server import preimport

    preimport()  # the point of a standby child: done before the run exists
    line = sys.stdin.buffer.readline(_JOB_MAX_BYTES)
    if not line.strip():
        log_path.unlink(missing_ok=True)
        return 0
    try:
        request_path, result_path = json.loads(line)
    except ValueError:
        return 2
    return child_main([str(request_path), str(result_path)])


_JOB_MAX_BYTES = 8192


def _exit_now(status: int) -> None:
    """Leave without interpreter teardown (Arrow's and NumPy's finalizers, hundreds of ms under load): the
    parent waits for this exit, and everything it reads is in the result file, already written."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == STANDBY_ARG:
        _exit_now(standby_main(Path(sys.argv[2])))
    _exit_now(child_main(sys.argv[1:]))
