"""What the API answers: one model per response shape, for /openapi.json and the contract tests.

The serializers in the core (benchmarks.serialize, runs.serialize, ...) build
these shapes as plain dicts; the live schemathesis run checks every answer
against the models, so a serializer that drifts fails a test.

Long module: a catalog of field declarations, one model per response, read as one
contract (the same way /openapi.json shows it); it holds no logic to split.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluator.contract.constraints import RunStatusName, Time


class Out(BaseModel):
    """A response object: every field is always present (null where it has no value)."""

    model_config = ConfigDict(extra="allow")


class ErrorDetail(Out):
    code: str = Field(description="stable: invalid, not_found, unauthorized, forbidden, conflict, too_large, ...")
    message: str = Field(description="a sentence a person can act on")
    field: str | None = Field(None, description="the field at fault (422), dotted for nested ones")


class Error(Out):
    """Every failure, whatever its status."""

    error: ErrorDetail

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": {"code": "invalid", "message": "'task' must be one of ['classification', 'regression']",
                   "field": "task"}}]})


class Check(Out):
    ok: bool
    error: str | None = None


class Health(Out):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok; degraded (answers, but e.g. no worker sent a heartbeat recently: runs wait); "
                    "unavailable (503: a part is down)")
    reasons: list[str] = Field(description="why it is degraded or unavailable; empty when ok")
    checks: dict[str, Check]


# --- datasets -----------------------------------------------------------------------------


class Dataset(Out):
    id: str
    name: str
    version: str
    ref: str = Field(description="name:version")
    owner: str | None
    status: Literal["pending", "ready", "invalid"]
    reason: str | None = Field(description="why the dataset is invalid")
    format: str
    row_id_column: str
    target_column: str
    features_key: str
    features_sha256: str | None
    labels_sha256: str | None
    row_count: int | None
    columns: list[str] | None
    created_at: Time
    registered_at: Time


class PutGrant(Out):
    method: Literal["put"]
    url: str
    headers: dict[str, str] = Field(description="send exactly these headers with the PUT")
    key: str
    expires_in: int


class DatasetUploads(Out):
    features: PutGrant
    labels: PutGrant


class DatasetCreated(Dataset):
    uploads: DatasetUploads


class DatasetList(Out):
    items: list[Dataset]


# --- benchmarks ---------------------------------------------------------------------------


class Limits(Out):
    timeout_s: int
    memory: str
    cpus: float
    pids: int
    max_bundle_bytes: int
    gpus: int = 0
    runtime: str | None = None  # set only when the benchmark names one (e.g. runsc)


class Quota(Out):
    """{} when unlimited."""

    limit: int | None = None
    window: str | None = None
    count_failed: bool | None = None


class Settings(Out):
    tie_breakers: list[str]
    opens_at: Time
    closes_at: Time
    log_policy: str
    final_selections: int
    private_fraction: float | None
    submission_kinds: list[Literal["bundle", "predictions"]]
    freeze_at: Time
    freeze_before_close_s: int | None
    significance_level: float = 0.0
    ladder: bool = False
    min_submission_interval_s: int | None = None
    teams: bool = Field(False, description="teams compete as one entrant (quotas and the leaderboard per team)")
    max_team_size: int | None = None


class Benchmark(Out):
    id: str
    title: str
    dataset: str = Field(description="the dataset's name:version")
    dataset_id: str
    task: str
    primary_metric: str
    direction: Literal["maximize", "minimize"]
    metrics: list[str]
    limits: Limits
    allowed_frameworks: list[str]
    quota: Quota
    visibility: str
    settings: Settings
    closed: bool
    owner: str | None
    created_at: Time


class BenchmarkList(Out):
    items: list[Benchmark]


class Phase(Out):
    """One phase of a benchmark, with the values its runs are evaluated and ranked by."""

    slug: str
    ordinal: int
    title: str
    dataset: str = Field(description="the dataset's name:version")
    task: str
    primary_metric: str
    direction: Literal["maximize", "minimize"]
    metrics: list[str]
    opens_at: Time
    closes_at: Time
    open: bool
    closed: bool
    quota: dict[str, Any]
    limits: dict[str, Any]
    visibility: Literal["public", "participants", "private"]


class PhaseList(Out):
    items: list[Phase]
    current: str | None = Field(description="the phase the benchmark is in (its default board)")


class SkippedRun(Out):
    run_id: str
    participant: str
    reason: str


class PhaseMigrated(Out):
    """The runs queued on the next phase; running it again queues none twice."""

    from_: str = Field(alias="from")
    to: str
    created: list[str] = Field(description="new runs, queued for the next phase's data, task and metrics")
    existing: list[str] = Field(description="runs an earlier migration created already")
    skipped: list[SkippedRun]


class RescoreQueued(Out):
    queued: int
    runs: list[str]


class QuotaState(Out):
    limit: int | None
    used: int
    remaining: int | None
    window: str | None
    resets_at: Time
    team: str | None = Field(None, description="the team whose quota this is (settings.teams), else null")


class RankedMetric(Out):
    metric: str
    direction: str


class Rules(Out):
    metric: str
    direction: str
    tie_breakers: list[RankedMetric]
    per_participant: str
    ties: str
    final_selections: int
    closes_at: Time
    baselines: str
    significance: dict[str, Any] | None = Field(None, description="the paired tests' rule; null when off")
    ladder: bool = Field(False, description="scores are Ladder scores (settings.ladder, public view)")
    entrant: Literal["participant", "team"] = Field(
        "participant", description="`team` (settings.teams): one entry per team, the best run made for it")


class LadderInfo(Out):
    threshold: float = Field(description="the step the last accepted run had to beat (a standard error)")
    decimals: int = Field(description="the precision the score is shown at")
    submissions: int
    accepted: int = Field(description="runs that moved the public score")


class TeamRef(Out):
    id: str
    name: str


class Entry(Out):
    rank: int | None = Field(description="null for a baseline: a reference entry is never ranked")
    participant: str
    score: float
    tie_breakers: dict[str, float | None]
    ci: dict[str, Any] | None = Field(description="bootstrap confidence interval of the score")
    run_id: str
    final: bool
    finished_at: Time
    baseline: bool = Field(description="a manager's reference entry, shown beside the ranked ones")
    name: str | None = Field(description="a baseline's submission name (null for ranked entries)")
    tied_with_next: bool = Field(False, description="the next ranked entry is not significantly different")
    p_value_vs_next: float | None = Field(None, description="the paired test's p-value against the next entry")
    test_vs_next: str | None = Field(None, description="mcnemar_mid_p, paired_bootstrap, or why not tested")
    ladder: LadderInfo | None = None
    team: TeamRef | None = Field(None, description="the team the entry is (settings.teams); `participant` is its name")
    submitted_by: str | None = Field(None, description="the participant whose run this is")


class Leaderboard(Out):
    benchmark: str
    view: Literal["public", "private"]
    closed: bool
    at: Time = Field(description="the instant the board shows: ?at=, or the freeze; null when live")
    frozen: bool = Field(description="true when a participant reads the board as it stood at the freeze")
    participants: int = Field(description="ranked participants (baselines are not counted)")
    phase: str | None = Field(None, description="the phase whose board this is; null without phases")
    rules: Rules
    total: int = Field(description="entries on the whole board (ranked and baselines); `entries` is one page")
    limit: int
    offset: int
    entries: list[Entry]


class CompareSide(Out):
    run_id: str
    owner: str
    value: float | None


class Comparison(Out):
    """metric(a) - metric(b) on the same rows, its CI and the p-value of no difference."""

    benchmark: str
    part: Literal["all", "public", "private"]
    metric: str
    test: str = Field(description="mcnemar_mid_p (accuracy), paired_bootstrap, or none (order statistics)")
    a: CompareSide
    b: CompareSide
    difference: float | None
    ci: dict[str, Any]
    p_value: float | None
    significant: bool | None
    level: float
    standard_error: float | None
    n_rows: int
    discordant: dict[str, int] | None = Field(description="rows only a / only b got right (McNemar); "
                                                          "null for a participant below min_rows")
    exact: bool
    min_rows: int | None
    reason: str | None


# --- submissions --------------------------------------------------------------------------


class RunRef(Out):
    id: str
    status: RunStatusName


class Submission(Out):
    id: str
    benchmark: str
    owner: str
    name: str
    version: str
    status: Literal["awaiting_upload", "uploaded", "rejected"]
    key: str
    filename: str
    declared_size: int | None
    size: int | None
    sha256: str | None
    upload_method: str
    kind: Literal["bundle", "predictions"]
    baseline: bool
    team: str | None = Field(None, description="the team its owner was in when it was made (null: alone)")
    created_at: Time
    expires_at: Time
    uploaded_at: Time
    runs: list[RunRef]


class SubmissionList(Out):
    items: list[Submission]


class PartGrant(Out):
    part_number: int
    size: int
    url: str


class Grant(Out):
    """How to upload: `put` (url + headers), `post` (url + form fields) or `multipart` (part URLs)."""

    method: Literal["put", "post", "multipart"]
    key: str
    bucket: str
    expires_at: Time
    max_bytes: int
    url: str | None = Field(None, description="put and post")
    headers: dict[str, str] | None = Field(None, description="put: send exactly these")
    fields: dict[str, str] | None = Field(None, description="post: the form fields, before the file")
    upload_id: str | None = Field(None, description="multipart")
    part_size: int | None = Field(None, description="multipart")
    parts: list[PartGrant] | None = Field(None, description="multipart: PUT each part to its url")
    complete: str | None = Field(None, description="multipart: POST the parts' ETags here")


class SubmissionCreated(Out):
    submission: Submission
    upload: Grant


# --- runs ---------------------------------------------------------------------------------


class Failure(Out):
    code: str
    message: str | None


class Run(Out):
    id: str
    submission: str
    benchmark: str
    owner: str
    status: RunStatusName
    metrics: dict[str, Any] | None = Field(description="the metrics.json document once scored")
    private_metrics: dict[str, Any] | None
    final: bool
    phase: str | None = Field(None, description="the phase the run belongs to; null without phases")
    migrated_from: str | None = Field(None, description="the earlier phase's run this one re-evaluates")
    baseline: bool
    kind: Literal["bundle", "predictions"]
    team: str | None = Field(None, description="the team its submission was made for (null: alone)")
    failure: Failure | None
    provenance: dict[str, Any]
    attempts: int
    results_prefix: str | None
    timestamps: dict[str, Time]
    queue_position: int | None = Field(None, description="while queued (GET /v1/runs/{id}): 1 is next")
    eta_s: float | None = Field(None, description="while waiting (GET /v1/runs/{id}): seconds until it ends, "
                                                  "from the stage durations of the benchmark's recent runs")


class RunPage(Out):
    items: list[Run]
    total: int
    limit: int
    offset: int


class PredictionsUrl(Out):
    url: str
    expires_in: int


class FeaturesUrl(Out):
    """A short-lived presigned GET of the benchmark's features (never its labels)."""

    url: str
    expires_in: int
    format: Literal["parquet", "csv"]
    row_id_column: str
    rows: int | None
    sha256: str | None


class PlotRef(Out):
    name: str = Field(description="e.g. confusion_matrix, roc, precision_recall, calibration, "
                                  "predicted_vs_actual, residuals")
    title: str
    url: str = Field(description="the SVG (image/svg+xml), a path on this API")


class PlotList(Out):
    """A run's plots: participants get bins of at least `min_bin_rows` rows of the rows they are scored on,
    managers (`exact`) every row at full resolution."""

    run: str
    variant: Literal["participant", "exact"]
    items: list[PlotRef]
    pending: bool = Field(False, description="the run is recorded and its plots are still being drawn "
                                             "(they follow metrics.json within seconds): poll again")


# --- teams --------------------------------------------------------------------------------


class TeamMember(Out):
    user: str
    state: Literal["invited", "accepted"]
    invited_by: str | None = Field(description="null for the creator's own membership")
    invited_at: Time
    accepted_at: Time


class Team(Out):
    """A benchmark's team; open invitations are listed to its members, the invitee and the managers only."""

    id: str
    benchmark: str
    name: str
    created_by: str
    created_at: Time
    size: int = Field(description="accepted members")
    members: list[TeamMember]


class TeamList(Out):
    items: list[Team]


# --- webhooks -----------------------------------------------------------------------------


class Webhook(Out):
    id: str
    owner: str
    scope: Literal["benchmark", "participant"]
    benchmark: str | None
    url: str
    events: list[str]
    created_at: Time


class WebhookCreated(Webhook):
    secret: str = Field(description="the HMAC-SHA256 key of the Evaluator-Signature header; shown once")


class WebhookList(Out):
    items: list[Webhook]


class DeliveryAttempt(Out):
    number: int
    at: Time
    status_code: int | None = Field(description="the receiver's HTTP status; null when none came")
    error: str | None
    duration_ms: int
    response: str = Field(description="the first bytes of the receiver's answer, escaped")


class WebhookDelivery(Out):
    id: str = Field(description="the Evaluator-Delivery header: the receiver's idempotency key")
    subscription: str
    event: str
    run_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[DeliveryAttempt]
    next_attempt_at: Time
    created_at: Time
    delivered_at: Time


class DeliveryPage(Out):
    items: list[WebhookDelivery]
    total: int
    limit: int
    offset: int


# --- tokens and events --------------------------------------------------------------------


class TokenCreated(Out):
    id: str
    owner: str
    role: str
    token: str = Field(description="shown once; only its hash is stored")


class Outcome(Out):
    key: str
    action: str
    detail: str
    run_id: str | None
    dataset_id: str | None


class EventsAccepted(Out):
    accepted: int
    outcomes: list[Outcome]
