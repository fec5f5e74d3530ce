"""evaluate_bundle: extract a bundle, predict in the sandbox, score outside it.

The one path shared by `evaluator evaluate` and the worker's evaluate_run. The
labels are read only here, in the trusted process, when scoring: nothing under
the run folder that is mounted into the container ever holds them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import pathlib
import socket
import time
from typing import Callable, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evaluator import run_folders, stages
from evaluator.bundles import BundleLimits, extract_bundle
from evaluator.config import Config
from evaluator.errors import FrameworkUnsupported, PredictionsInvalid, RunFailure
from evaluator.failures import program_failed
from evaluator.isolated_scoring import score_isolated
from evaluator.sandbox.frameworks import image_name
from evaluator.sandbox.spec import Limits, SandboxResult, SandboxSpec
from evaluator.settings import Scoring
from evaluator.storage.models import RunStatus, utcnow

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


class Sandbox(Protocol):
    """What evaluate_bundle needs from a sandbox (DockerSandbox in production)."""

    def run(self, spec: SandboxSpec, *, should_cancel: Callable[[], bool] | None = None) -> SandboxResult: ...


@dataclasses.dataclass
class Evaluation:
    """The outcome of one evaluation: a terminal status, metrics or a failure, provenance, artifacts."""

    status: str
    metrics: dict | None
    failure: dict | None
    provenance: dict
    predictions: bytes | None = None
    log: bytes = b""
    private_metrics: dict | None = None  # the private part's document when the labels are split
    plot_data: dict | None = None  # the plots' summaries (evaluator.plots.stats), per part; not in the record

    @property
    def succeeded(self) -> bool:
        return self.status == RunStatus.SUCCEEDED.value

    def to_record(self) -> dict:
        """Return the JSON run record the API serves: status, metrics, failure, provenance."""
        return {"status": self.status, "metrics": self.metrics, "private_metrics": self.private_metrics,
                "failure": self.failure, "provenance": self.provenance}


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stage_features(source: pathlib.Path, dest: pathlib.Path, *, drop_columns: tuple[str, ...] = ()) -> int:
    """Write the features as Parquet at dest (CSV converted, streaming); return the row count.

    Columns in drop_columns (the target) are left out, so a features file that
    still carries labels cannot leak them into the sandbox.
    """
    with source.open("rb") as handle:
        is_parquet = handle.read(4) == b"PAR1"
    if is_parquet:
        reader = pq.ParquetFile(source)
        keep = [name for name in reader.schema_arrow.names if name not in drop_columns]
        batches = reader.iter_batches(columns=keep)
        schema = reader.schema_arrow
        schema = pa.schema([schema.field(name) for name in keep])
    else:
        stream = pacsv.open_csv(source)
        keep = [name for name in stream.schema.names if name not in drop_columns]
        schema = pa.schema([stream.schema.field(name) for name in keep])
        batches = (batch.select(keep) for batch in stream)
    rows = 0
    with pq.ParquetWriter(dest, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    dest.chmod(0o644)
    return rows


# Exit status of the in-image program (images/base/evaluator_predict.py) when the model's output cannot
# be written as predictions; the reason is its last "[evaluator] invalid predictions: " log line.
EXIT_INVALID_PREDICTIONS = 3
_INVALID_LINE = b"[evaluator] invalid predictions: "
_REASON_CHARS = 500


def _invalid_output(log: bytes) -> PredictionsInvalid:
    """The in-image program's sentence, from the log (the model can write there too: it only fools itself)."""
    at = log.rfind(_INVALID_LINE)
    reason = log[at + len(_INVALID_LINE):].split(b"\n", 1)[0].decode("utf-8", "replace") if at >= 0 else ""
    reason = reason.strip()[:_REASON_CHARS] or "see the log"
    return PredictionsInvalid(f"the model's output could not be written as predictions: {reason}")


def _mkdir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the sandbox user (65534) must read it
    return path


def evaluate_bundle(
    bundle_path: pathlib.Path,
    features_path: pathlib.Path,
    labels_path: pathlib.Path,
    *,
    scoring: Scoring,
    sandbox: Sandbox,
    config: Config,
    work_dir: pathlib.Path,
    run_id: str,
    limits: Limits | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_stage: Callable[[str], None] | None = None,
    bundle_limits: BundleLimits | None = None,
    allowed_frameworks: list[str] | None = None,
    known_sha256: dict[str, str | None] | None = None,
    attempt: int = 1,
) -> Evaluation:
    """Evaluate one bundle on one dataset; participant failures end as a failed Evaluation.

    `work_dir` must be empty or missing; its model/ and data/ folders (made 0755 here)
    are bind-mounted into the container, and nothing else under it is. `limits` default to
    the config's (Limits.from_config).

    Raises:
        InfrastructureError: Docker is unavailable; the caller retries the whole run.
    """
    stage = on_stage or (lambda name: None)
    limits = limits or Limits.from_config(config)
    durations: dict[str, float] = {}
    stamps: dict[str, str] = {}  # evaluator.stages: staged, sandbox ready, predicted, scored
    provenance: dict = {"run_id": run_id, "worker_host": socket.gethostname(), "limits": limits.to_dict(),
                        "durations_s": durations, "stages": stamps}
    log = b""
    predictions: bytes | None = None
    clock = time.monotonic()
    current = "preparing"
    try:
        stage("preparing")
        known = known_sha256 or {}  # the worker already hashed these while downloading or registering
        for name, path in (("bundle", bundle_path), ("features", features_path), ("labels", labels_path)):
            provenance[f"{name}_sha256"] = known.get(name) or sha256_file(path)
        _mkdir(work_dir)
        manifest = extract_bundle(bundle_path, _mkdir(work_dir / "model"), bundle_limits)
        if allowed_frameworks and manifest.framework not in allowed_frameworks:
            raise FrameworkUnsupported(f"this benchmark accepts {', '.join(allowed_frameworks)}; "
                                       f"the bundle is {manifest.framework}")
        image = image_name(manifest.framework, config)
        provenance.update(bundle=manifest.to_dict(), framework=manifest.framework, image=image)
        data_dir = _mkdir(work_dir / "data")
        provenance["rows"] = stage_features(features_path, data_dir / "features.parquet",
                                            drop_columns=(scoring.target_column,))
        durations["preparing"] = round(time.monotonic() - clock, 3)
        stages.stamp(stamps, "staged_at")

        current, clock = "running", time.monotonic()
        stage("running")
        spec = SandboxSpec(image=image, model_dir=manifest.root, data_dir=data_dir, limits=limits, run_id=run_id,
                           env={"EVALUATOR_ROW_ID_COLUMN": scoring.row_id_column}, attempt=attempt)
        sandbox_called = utcnow()
        result = sandbox.run(spec, should_cancel=should_cancel)
        stages.stamp(stamps, "sandbox_ready_at", sandbox_called + datetime.timedelta(seconds=result.ready_s))
        stages.stamp(stamps, "predicted_at")
        log, predictions = result.log, result.predictions
        provenance.update(image_id=result.image_id, sandbox="warm" if result.warm else "cold")
        durations["running"] = round(time.monotonic() - clock, 3)
        if result.exit_code == EXIT_INVALID_PREDICTIONS:
            raise _invalid_output(log)
        if result.exit_code != 0:
            raise program_failed(result.exit_code, log, run_id)
        if predictions is None:
            raise PredictionsInvalid("the model wrote no /output/predictions.parquet")

        current, clock = "scoring", time.monotonic()
        stage("scoring")
        predictions_path = work_dir / "predictions.parquet"
        predictions_path.write_bytes(predictions)
        scoring_stats: dict[str, object] = {}
        provenance["scoring"] = scoring_stats
        plot_data: dict = {}
        document, private_document = score_isolated(
            scoring, labels_path, predictions_path, work_dir=work_dir / "scoring", config=config,
            expected_rows=provenance["rows"], should_cancel=should_cancel, stats=scoring_stats, plot_data=plot_data)
        durations["scoring"] = round(time.monotonic() - clock, 3)
        stages.stamp(stamps, "scored_at")
    except RunFailure as ex:
        durations[current] = round(time.monotonic() - clock, 3)
        log = ex.log or log
        if ex.image_id:
            provenance["image_id"] = ex.image_id
        logger.info("Run %s ended %s at %s: %s: %s", run_id, ex.status, current, ex.code, ex.message)
        return Evaluation(ex.status, None, {"code": ex.code, "message": ex.message}, provenance, predictions, log)
    durations["total"] = round(sum(durations.values()), 3)
    return Evaluation(RunStatus.SUCCEEDED.value, document, None, provenance, predictions, log, private_document,
                      plot_data or None)


def new_work_dir(config: Config, run_id: str) -> pathlib.Path:
    """Return a fresh run folder under config.work_dir, traversable by the sandbox user.

    Its name is opaque (see evaluator.run_folders): the sandbox can read its path.
    """
    return run_folders.prepare(config, run_id)


def evaluate_predictions_file(
    predictions_file: pathlib.Path,
    labels_path: pathlib.Path,
    *,
    scoring: Scoring,
    config: Config,
    work_dir: pathlib.Path,
    run_id: str,
    file_format: str,
    expected_rows: int | None,
    should_cancel: Callable[[], bool] | None = None,
    on_stage: Callable[[str], None] | None = None,
    known_sha256: dict[str, str | None] | None = None,
) -> Evaluation:
    """Score a participant's predictions file (`csv` or `parquet`): no sandbox, the same checked scorer.

    A CSV is converted inside the scoring child, bounded (evaluator.scoring.csv_predictions); the
    Parquet that results, or the one uploaded, then passes the footer checks and the decode budget
    a sandbox's predictions pass. Participant failures end as a failed Evaluation.
    """
    stage = on_stage or (lambda name: None)
    durations: dict[str, float] = {}
    known = known_sha256 or {}
    provenance: dict = {"run_id": run_id, "worker_host": socket.gethostname(), "kind": "predictions",
                        "predictions_format": file_format, "rows": expected_rows, "durations_s": durations}
    clock, current = time.monotonic(), "preparing"
    predictions: bytes | None = None
    try:
        stage("preparing")
        provenance["predictions_file_sha256"] = known.get("predictions") or sha256_file(predictions_file)
        provenance["labels_sha256"] = known.get("labels") or sha256_file(labels_path)
        _mkdir(work_dir)
        durations["preparing"] = round(time.monotonic() - clock, 3)
        current, clock = "scoring", time.monotonic()
        stage("scoring")
        csv_source = predictions_file if file_format == "csv" else None
        predictions_path = work_dir / "predictions.parquet" if csv_source is not None else predictions_file
        scoring_stats: dict[str, object] = {}
        provenance["scoring"] = scoring_stats
        plot_data: dict = {}
        document, private_document = score_isolated(
            scoring, labels_path, predictions_path, work_dir=work_dir / "scoring", config=config,
            expected_rows=expected_rows, should_cancel=should_cancel, stats=scoring_stats, csv_source=csv_source,
            plot_data=plot_data)
        predictions = predictions_path.read_bytes()
        durations["scoring"] = round(time.monotonic() - clock, 3)
    except RunFailure as ex:
        durations[current] = round(time.monotonic() - clock, 3)
        logger.info("Run %s ended %s at %s: %s: %s", run_id, ex.status, current, ex.code, ex.message)
        return Evaluation(ex.status, None, {"code": ex.code, "message": ex.message}, provenance, None, b"")
    durations["total"] = round(sum(durations.values()), 3)
    return Evaluation(RunStatus.SUCCEEDED.value, document, None, provenance, predictions, b"", private_document,
                      plot_data or None)
