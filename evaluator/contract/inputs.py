"""What clients send: request bodies (strict JSON types) and query parameters.

Unknown body fields are ignored, as before. Rules that need the database or
another field's value (metrics allowed for the task, a dataset the caller may
use, closes_at after opens_at) stay in the core, which raises ValidationFailed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from evaluator.contract.constraints import (
    BUNDLE_NAME_PATTERN,
    MAX_JSON_INTEGER,
    MEMORY_PATTERN,
    TEAM_NAME_PATTERN,
    Count,
    DataFormat,
    Framework,
    LogPolicy,
    Metric,
    QuotaWindow,
    RoleName,
    RunStatusName,
    Slug,
    SubmissionKind,
    Task,
    Text200,
    Text300,
    Text500,
    Text2000,
    Timestamp,
    UploadMethod,
    Visibility,
)


class Body(BaseModel):
    """A JSON request body: JSON's own types only (no "5" for 5), unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Query(BaseModel):
    """Query parameters: strings converted to the declared types."""

    model_config = ConfigDict(extra="ignore")


# --- datasets -----------------------------------------------------------------------------


class DatasetSizes(Body):
    features: Count | None = Field(None, description="bytes; signed into the upload URL when given")
    labels: Count | None = Field(None, description="bytes; signed into the upload URL when given")


class DatasetIn(Body):
    """Declare a dataset; the answer carries a presigned PUT for each of its two files."""

    name: Slug
    version: Slug = "1"
    format: DataFormat = "parquet"
    row_id_column: Text200 = "row_id"
    target_column: Text200 = "target"
    sizes: DatasetSizes | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "iris", "version": "1", "format": "parquet"}]})


# --- benchmarks ---------------------------------------------------------------------------


class LimitsIn(Body):
    """Sandbox limits of the benchmark's runs; a field left out takes the platform's default."""

    timeout_s: Annotated[int, Field(ge=1, le=24 * 3600)] | None = None
    memory: Annotated[str, Field(max_length=20, pattern=MEMORY_PATTERN)] | None = None
    cpus: Annotated[float, Field(gt=0, le=1024)] | None = None
    pids: Annotated[int, Field(ge=16, le=MAX_JSON_INTEGER)] | None = None
    max_bundle_bytes: Count | None = None
    gpus: Annotated[int, Field(ge=0, le=16, description="GPUs per run (needs GPU workers)")] | None = None
    runtime: Annotated[Slug, Field(description="a Docker runtime, e.g. runsc (gVisor): the runs go to the runsc "
                                               "queue, served by hosts that have it")] | None = None


class QuotaIn(Body):
    """Submissions per participant per window; {} (or no quota) means unlimited."""

    limit: Count | None = Field(None, description="required unless the quota is {}")
    window: QuotaWindow = "utc_day"
    count_failed: bool = Field(True, description="whether failed and timed-out runs use up the quota")

    @model_validator(mode="after")
    def _limit_unless_empty(self) -> QuotaIn:
        if self.model_fields_set and self.limit is None:
            raise ValueError("'limit' is required unless the quota is {} (unlimited)")
        return self


class SettingsIn(Body):
    """Competition rules: schedule, tie-breaks, final selections, log policy, private label split."""

    tie_breakers: list[Metric] = Field([], max_length=20, description="metrics other than the primary one")
    opens_at: Timestamp | None = None
    closes_at: Timestamp | None = None
    log_policy: LogPolicy = Field("own", description="what participants see of their runs' sandbox logs")
    final_selections: Annotated[int, Field(ge=0, le=100)] = 0
    private_fraction: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="share of the labels scored privately until the benchmark closes")
    submission_kinds: list[SubmissionKind] = Field(
        ["bundle"], min_length=1, max_length=2,
        description="what participants submit: model bundles, prediction files (CSV or Parquet), or both")
    freeze_at: Timestamp | None = Field(
        None, description="from then until the close, participants see the leaderboard as it stood then")
    freeze_before_close_s: Annotated[int, Field(ge=1, le=366 * 24 * 3600)] | None = Field(
        None, description="freeze this many seconds before closes_at (when freeze_at is not set)")
    significance_level: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        0.0, description="adjacent leaderboard entries not significantly different at this level share a rank "
                         "(paired test on the runs' rows; 0: off)")
    ladder: bool = Field(False, description="the public leaderboard shows Ladder scores (Blum & Hardt 2015): a "
                                            "participant's score moves only for a significant improvement")
    min_submission_interval_s: Annotated[int, Field(ge=1, le=30 * 24 * 3600)] | None = Field(
        None, description="a participant's submissions at least this many seconds apart (429 too_soon)")
    teams: bool = Field(False, description="teams compete as one entrant: quotas and the leaderboard count per team")
    max_team_size: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="accepted members of one team at most (no limit when left out)")


class PhaseIn(Body):
    """One phase of a benchmark (dev, final, ...): a field left out takes the benchmark's value."""

    slug: Slug
    title: Text500 | None = None
    dataset: Text300 | None = Field(None, description="this phase's dataset (id or name:version)")
    task: Task | None = Field(None, description="another task brings its own metrics (all of it by default)")
    primary_metric: Metric | None = None
    metrics: list[Metric] | None = Field(None, max_length=50)
    opens_at: Timestamp | None = Field(None, description="submissions go to the phase open now")
    closes_at: Timestamp | None = None
    quota: QuotaIn | None = Field(None, description="counted within this phase; none: the benchmark's quota")
    limits: LimitsIn | None = Field(None, description="over the benchmark's limits, field by field")
    visibility: Visibility = Field("public", description="who reads the phase and its board (managers always)")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"slug": "final", "dataset": "iris-final:1", "primary_metric": "f1_macro",
         "opens_at": "2026-03-01T00:00:00Z", "quota": {"limit": 2}}]})


_BENCHMARK_EXAMPLE: JsonDict = {
    "id": "iris", "dataset": "iris:1", "task": "classification", "primary_metric": "accuracy",
    "limits": {"timeout_s": 600, "memory": "2g"}, "quota": {"limit": 5, "window": "utc_day"}}


class BenchmarkIn(Body):
    """Create a benchmark over a dataset the caller may use."""

    id: Slug
    title: Text500 | None = Field(None, description="defaults to the id")
    dataset: Text300 = Field(description="a dataset id or name:version")
    task: Task
    primary_metric: Metric | None = Field(None, description="one of the task's metrics; defaults per task")
    metrics: list[Metric] | None = Field(None, max_length=50, description="defaults to every metric of the task")
    limits: LimitsIn | None = None
    allowed_frameworks: list[Framework] | None = Field(None, max_length=20, description="defaults to all")
    quota: QuotaIn | None = None
    visibility: Visibility = "public"
    settings: SettingsIn | None = None
    phases: list[PhaseIn] | None = Field(None, max_length=20, description="ordered phases; none: one implicit phase")

    model_config = ConfigDict(json_schema_extra={"examples": [_BENCHMARK_EXAMPLE]})


class BenchmarkPatch(Body):
    """Change a benchmark's scoring; a field left out keeps its value."""

    # None only as the default: a field left out keeps its value, an explicit null is refused.
    title: Text500 = None  # type: ignore[assignment]
    dataset: Text300 = Field(None, description="a dataset id or name:version")  # type: ignore[assignment]
    primary_metric: Metric = None  # type: ignore[assignment]
    metrics: list[Metric] = Field(None, max_length=50)  # type: ignore[arg-type]
    settings: SettingsIn = Field(None, description="replaces the settings whole")  # type: ignore[assignment]

    model_config = ConfigDict(json_schema_extra={"examples": [{"primary_metric": "f1_macro"}]})


# --- submissions and runs -----------------------------------------------------------------


class SubmissionIn(Body):
    """Ask for an upload grant for one bundle, or one predictions file (.csv, .parquet) where accepted."""

    name: Slug
    version: Slug = "1"
    filename: Annotated[str, Field(min_length=1, max_length=255, pattern=BUNDLE_NAME_PATTERN)] = "bundle.tar.gz"
    size: Count | None = Field(None, description="the bundle's bytes; required for put and multipart, "
                                                 "over the benchmark's limit is 413")
    method: UploadMethod | None = Field(None, description="post (a policy) by default; multipart for large bundles")
    baseline: bool = Field(False, description="a manager's reference entry: shown on the leaderboard, never ranked")
    phase: Slug | None = Field(None, description="the phase to submit to; by default the one open now")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "logreg", "version": "1.0.0", "filename": "bundle.tar.gz", "size": 2048, "method": "put"}]})


class Part(Body):
    part_number: Annotated[int, Field(ge=1, le=10_000)]
    etag: Text200 = Field(description="the ETag header the store answered the part's PUT with")


class MultipartComplete(Body):
    """Join the uploaded parts of a multipart grant."""

    parts: list[Part] = Field(max_length=10_000, description="every part, non-empty")


class FinalIn(Body):
    selected: bool = True


class RunPatch(Body):
    """Change a run's standing on the leaderboard (the benchmark's managers)."""

    baseline: bool | None = Field(None, description="true: a reference entry, shown but never ranked nor counted")


class TokenIn(Body):
    """Issue an API token (shown once)."""

    owner: Slug
    role: RoleName = "participant"
    label: Text200 | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"owner": "alice", "role": "participant"}]})


class RunQuery(Query):
    benchmark: Annotated[str, Field(max_length=100)] | None = None
    status: RunStatusName | None = None
    owner: Annotated[str, Field(max_length=100)] | None = Field(None, description="a participant (admins see all)")
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    offset: Annotated[int, Field(ge=0, le=MAX_JSON_INTEGER)] = 0


class WebhookIn(Body):
    """Subscribe a URL to signed `run.finished` events (the secret is in the answer, once)."""

    url: Text2000 = Field(description="http(s); private and loopback targets only where the operator allows")
    scope: Literal["benchmark", "participant"] = Field(
        "participant", description="`benchmark`: every run of it (its managers); `participant`: your own runs")
    benchmark: Slug | None = Field(None, description="required for scope `benchmark`; else limits to one benchmark")
    events: list[Literal["run.finished"]] = Field(["run.finished"], min_length=1, max_length=5)

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"url": "https://ci.example.org/hooks/evaluator", "scope": "participant", "benchmark": "iris"}]})


class TeamIn(Body):
    """Create a team of the benchmark; a participant creating it is its first member."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=TEAM_NAME_PATTERN,
                               description="shown on the leaderboard; unique in the benchmark (any case)")]

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Gradient Descenders"}]})


class InvitationIn(Body):
    """Invite a participant (by their token's owner name) to the team."""

    user: Slug

    model_config = ConfigDict(json_schema_extra={"examples": [{"user": "bob"}]})


class PageQuery(Query):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    offset: Annotated[int, Field(ge=0, le=MAX_JSON_INTEGER)] = 0


class LeaderboardQuery(Query):
    view: Literal["public", "private"] | None = Field(
        None, description="`private` lets the benchmark's managers preview the private ranking before close")
    at: Timestamp | None = Field(
        None, description="the board as it stood then: runs finished by then, the rules then in force")
    phase: Slug | None = Field(None, description="a phase's board (its runs and rules); by default the current phase")
    limit: Annotated[int, Field(ge=1, le=1000, description="entries per page (ranks are over the whole board)")] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_JSON_INTEGER, description="entries skipped, in board order")] = 0


class CompareQuery(Query):
    a: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="a run id")
    b: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="another run id")
    metric: Metric | None = Field(None, description="defaults to the benchmark's primary metric")
    view: Literal["public", "private"] | None = Field(
        None, description="the part of split labels (managers; a participant: `private` after the close)")


class EventNotification(Body):
    """A bucket notification as the store sends it: MinIO's S3 event or a SeaweedFS filer event."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"EventName": "s3:ObjectCreated:Put", "Key": "uploads/bundles/iris/alice/m/1/0b7c.tar.gz",
         "Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "uploads"}, "object": {
             "key": "bundles/iris/alice/m/1/0b7c.tar.gz", "size": 2048,
             "eTag": "9e107d9d372bb6826bd81d3542a419d6"}}}]}]})
