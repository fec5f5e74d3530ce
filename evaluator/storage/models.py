"""One class per table: datasets, benchmarks, phases, teams, submissions, runs, events, API tokens, web sessions.

Long module: the whole schema is read in one place, beside the migrations that build it;
each class is a table's columns and a few row helpers, nothing else."""

from __future__ import annotations

import datetime
import enum
import uuid

import peewee

from evaluator.storage import board_values
from evaluator.storage.db import BaseModel


def utcnow() -> datetime.datetime:
    """Return naive UTC: both PostgreSQL and SQLite store it the same way."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def isoformat(value: datetime.datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


class DatasetStatus(str, enum.Enum):
    PENDING = "pending"
    READY = "ready"
    INVALID = "invalid"


class SubmissionStatus(str, enum.Enum):
    AWAITING_UPLOAD = "awaiting_upload"
    UPLOADED = "uploaded"
    REJECTED = "rejected"


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    SCORING = "scoring"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


TERMINAL_RUN_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED})
ACTIVE_RUN_STATUSES = frozenset({RunStatus.PREPARING, RunStatus.RUNNING, RunStatus.SCORING})


class Role(str, enum.Enum):
    ADMIN = "admin"
    OWNER = "owner"  # a benchmark owner: publishes datasets and benchmarks, manages their own
    PARTICIPANT = "participant"


class Dataset(BaseModel):
    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    name = peewee.TextField()
    version = peewee.TextField()
    status = peewee.TextField(default=DatasetStatus.PENDING.value, index=True)
    reason = peewee.TextField(null=True)
    row_id_column = peewee.TextField(default="row_id")
    target_column = peewee.TextField(default="target")
    file_format = peewee.TextField(default="parquet")
    features_key = peewee.TextField()
    labels_key = peewee.TextField()
    features_sha256 = peewee.TextField(null=True)
    labels_sha256 = peewee.TextField(null=True)
    row_count = peewee.BigIntegerField(null=True)
    columns = peewee.JSONField(null=True)
    owner = peewee.TextField(null=True, index=True)  # who registered it; None (older rows): the admins' alone
    created_at = peewee.DateTimeField(default=utcnow)
    registered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "dataset"
        indexes = ((("name", "version"), True),)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class Benchmark(BaseModel):
    id = peewee.TextField(primary_key=True)  # a slug: it appears in URLs and object keys
    title = peewee.TextField()
    dataset = peewee.ForeignKeyField(Dataset, backref="benchmarks", on_delete="RESTRICT")
    dataset_id: uuid.UUID  # peewee's column attribute for the key, declared for the type checker
    task = peewee.TextField()
    primary_metric = peewee.TextField()
    direction = peewee.TextField()
    metrics = peewee.JSONField(default=list)
    limits = peewee.JSONField(default=dict)
    allowed_frameworks = peewee.JSONField(default=list)
    quota = peewee.JSONField(default=dict)
    visibility = peewee.TextField(default="public")
    settings = peewee.JSONField(default=dict)
    owner = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "benchmark"


class Phase(BaseModel):
    """One ordered stage of a benchmark (e.g. dev, then final): its own data, window, quota, limits, board.

    A column left null takes the benchmark's value; a benchmark without phases is one implicit phase.
    """

    id = peewee.BigAutoField()
    benchmark = peewee.ForeignKeyField(Benchmark, backref="phases", on_delete="CASCADE")
    benchmark_id: str
    slug = peewee.TextField()
    ordinal = peewee.IntegerField()  # 0, 1, ...: the order runs migrate in
    title = peewee.TextField(null=True)
    dataset = peewee.ForeignKeyField(Dataset, null=True, backref="phases", on_delete="RESTRICT")
    dataset_id: uuid.UUID | None
    task = peewee.TextField(null=True)
    primary_metric = peewee.TextField(null=True)
    metrics = peewee.JSONField(null=True)
    opens_at = peewee.DateTimeField(null=True)
    closes_at = peewee.DateTimeField(null=True)
    quota = peewee.JSONField(null=True)
    limits = peewee.JSONField(null=True)
    visibility = peewee.TextField(default="public")
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "phase"
        indexes = ((("benchmark", "slug"), True), (("benchmark", "ordinal"), True))


class TeamMemberState(str, enum.Enum):
    INVITED = "invited"
    ACCEPTED = "accepted"


class Team(BaseModel):
    """A benchmark's team: its members compete as one entrant when the benchmark's settings.teams is on."""

    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    benchmark = peewee.ForeignKeyField(Benchmark, backref="teams", on_delete="CASCADE")
    benchmark_id: str
    name = peewee.TextField()
    created_by = peewee.TextField()  # who created it: they (and the benchmark's managers) invite
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "team"
        indexes = ((("benchmark", "name"), True),)


class TeamMember(BaseModel):
    """An invitation to a team, or (accepted) a membership; leaving deletes the row, the runs keep their team."""

    id = peewee.BigAutoField()
    team = peewee.ForeignKeyField(Team, backref="members", on_delete="CASCADE")
    team_id: uuid.UUID
    benchmark = peewee.TextField()  # the team's, copied: one accepted membership per (benchmark, member)
    member = peewee.TextField(index=True)
    state = peewee.TextField(default=TeamMemberState.INVITED.value)
    invited_by = peewee.TextField(null=True)  # None: the creator's own membership
    invited_at = peewee.DateTimeField(default=utcnow)
    accepted_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "team_member"
        indexes = ((("team", "member"), True),)


ONE_TEAM_INDEX = "team_member_one_team_per_benchmark"
TeamMember.add_index(TeamMember.benchmark, TeamMember.member, unique=True, name=ONE_TEAM_INDEX,
                     where=(TeamMember.state == TeamMemberState.ACCEPTED.value))


class Submission(BaseModel):
    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    benchmark = peewee.ForeignKeyField(Benchmark, backref="submissions", on_delete="CASCADE")
    benchmark_id: str
    runs: peewee.ModelSelect[Run]  # the backref of Run.submission
    owner = peewee.TextField(index=True)
    name = peewee.TextField()
    version = peewee.TextField()
    bucket = peewee.TextField()
    object_key = peewee.TextField(unique=True)
    filename = peewee.TextField(default="bundle.tar.gz")
    phase = peewee.ForeignKeyField(Phase, null=True, backref="submissions", on_delete="SET NULL")
    phase_id: int | None  # the phase it was submitted to; None on a benchmark without phases
    kind = peewee.TextField(default="bundle")  # bundle (a model the sandbox runs) | predictions (a file)
    baseline = peewee.BooleanField(default=False)  # a manager's reference entry: on the board, never ranked
    # The team its owner was an accepted member of when it was made: it stays that team's, whoever leaves.
    team = peewee.ForeignKeyField(Team, backref="submissions", null=True, on_delete="SET NULL")
    team_id: uuid.UUID | None
    declared_size = peewee.BigIntegerField(null=True)
    size = peewee.BigIntegerField(null=True)
    etag = peewee.TextField(null=True)
    sha256 = peewee.TextField(null=True)
    upload_method = peewee.TextField(default="put")
    upload_id = peewee.TextField(null=True)  # multipart upload id, while one is open
    token_id = peewee.UUIDField(null=True, index=True)  # the token that asked for the grant: revoking ends it
    status = peewee.TextField(default=SubmissionStatus.AWAITING_UPLOAD.value, index=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True)
    uploaded_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "submission"
        indexes = ((("benchmark", "owner", "created_at"), False),)  # the leaderboard page's entry counts


class Run(BaseModel):
    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    # NOTE: one run per submission (a partial unique index below), plus one per later phase it migrated to
    submission = peewee.ForeignKeyField(Submission, backref="runs", on_delete="CASCADE")
    benchmark = peewee.ForeignKeyField(Benchmark, backref="runs", on_delete="CASCADE")
    submission_id: uuid.UUID
    benchmark_id: str
    phase = peewee.ForeignKeyField(Phase, null=True, backref="runs", on_delete="SET NULL")
    phase_id: int | None  # None: a benchmark without phases (or a run from before it had them)
    migrated_from = peewee.ForeignKeyField("self", null=True, backref="migrations", on_delete="SET NULL")
    migrated_from_id: uuid.UUID | None  # the earlier phase's run this one re-evaluates on the next phase
    owner = peewee.TextField(index=True)
    status = peewee.TextField(default=RunStatus.QUEUED.value, index=True)
    failure_code = peewee.TextField(null=True)
    failure_message = peewee.TextField(null=True)
    metrics = peewee.JSONField(null=True)  # the metrics.json document (public part when the labels are split)
    private_metrics = peewee.JSONField(null=True)  # the private part: never shown before the benchmark closes
    metrics_history = peewee.JSONField(default=list)  # earlier documents, kept when a run is re-scored
    board_values = peewee.JSONField(null=True)  # the documents' flat numbers, what a board ranks (board_values.of)
    final = peewee.BooleanField(default=False)  # chosen by its owner for the final leaderboard
    provenance = peewee.JSONField(default=dict)
    attempts = peewee.IntegerField(default=0)  # claims; each one's worker and times are in provenance.attempts
    crashes = peewee.IntegerField(default=0)  # times a worker died holding it: the poison-pill guard counts these
    worker_host = peewee.TextField(null=True)
    lease_owner = peewee.TextField(null=True)  # the worker evaluating it now
    lease_expires_at = peewee.DateTimeField(null=True)  # renewed while it works; past it, another may take over
    results_prefix = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    queued_at = peewee.DateTimeField(default=utcnow)
    preparing_at = peewee.DateTimeField(null=True)
    running_at = peewee.DateTimeField(null=True)
    scoring_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow, index=True)  # every write the leaderboard reads sets it

    class Meta:
        table_name = "run"
        indexes = ((("benchmark", "status", "finished_at"), False),  # recent runs of a benchmark (ETAs)
                   (("benchmark", "status", "updated_at"), False))  # the leaderboard cache's stamp (board_cache)

    def save(self, *args, **kwargs):
        """Keep the board's compact values in step with the documents (every Run.create and save).

        A row read without both documents (a partial select) keeps the values it has.
        """
        if kwargs.get("force_insert") or ("metrics" in self.__data__ and "private_metrics" in self.__data__):
            self.board_values = board_values.of(self.metrics, self.private_metrics)
        return super().save(*args, **kwargs)


# A submission's own run is unique; a migrated run is unique per (submission, phase): migrating twice adds none.
Run.add_index(Run.index(Run.submission, unique=True, where=Run.migrated_from.is_null(),
                        name="run_submission_original"))
Run.add_index(Run.index(Run.submission, Run.phase, unique=True, where=Run.migrated_from.is_null(False),
                        name="run_submission_phase_migrated"))
# A board scans a benchmark's succeeded runs (evaluator.standings; migration 0012).
Run.add_index(Run.index(Run.benchmark, where=Run.status == RunStatus.SUCCEEDED.value,
                        name="run_benchmark_id_succeeded"))


class ObjectEvent(BaseModel):
    """One row per distinct object version seen: the dedupe log of notifications."""

    id = peewee.BigAutoField()
    bucket = peewee.TextField()
    key = peewee.TextField()
    version = peewee.TextField()  # versionId, else etag, else size+sequencer
    size = peewee.BigIntegerField(null=True)
    etag = peewee.TextField(null=True)
    sequencer = peewee.TextField(null=True)
    source = peewee.TextField()
    deliveries = peewee.IntegerField(default=1)
    outcome = peewee.TextField(null=True)
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "object_event"
        indexes = ((("bucket", "key", "version"), True),)


class ApiToken(BaseModel):
    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    owner = peewee.TextField(index=True)
    role = peewee.TextField()
    token_hash = peewee.TextField(unique=True)  # sha256 of the secret; the secret is shown once
    label = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_token"


class OutboxMessage(BaseModel):
    """A broker message committed in the transaction that needs it; a relay sends it and stamps sent_at."""

    id = peewee.BigAutoField()
    kind = peewee.TextField()  # a field of intake.Queues: evaluate_run, register_dataset, rescore_run
    argument = peewee.TextField()  # the id the message carries
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    sent_at = peewee.DateTimeField(null=True, index=True)  # None: still pending
    attempts = peewee.IntegerField(default=0)  # failed sends so far
    last_error = peewee.TextField(null=True)

    class Meta:
        table_name = "outbox_message"


class BenchmarkRevision(BaseModel):
    """A benchmark's scoring rules as they were from `changed_at` on: the leaderboard's history reads them."""

    id = peewee.BigAutoField()
    benchmark = peewee.ForeignKeyField(Benchmark, backref="revisions", on_delete="CASCADE")
    primary_metric = peewee.TextField()
    metrics = peewee.JSONField(default=list)
    settings = peewee.JSONField(default=dict)
    changed_at = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "benchmark_revision"


class WebSession(BaseModel):
    """A browser session of the web pages: signed in with an API token, ended by sign-out or the token's revocation."""

    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    secret_hash = peewee.TextField(unique=True)  # sha256 of the cookie's secret; the secret lives in the cookie only
    token = peewee.ForeignKeyField(ApiToken, backref="sessions", on_delete="CASCADE")
    csrf_token = peewee.TextField()  # every form and unsafe request of this session carries it
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "web_session"


class WebhookSubscription(BaseModel):
    """Where to POST a signed `run.finished`: a benchmark's runs (its managers) or a participant's own runs."""

    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    owner = peewee.TextField(index=True)  # who created it: they list it, delete it and read its delivery log
    role = peewee.TextField()  # the owner's role then: what the payload may show is decided with it
    scope = peewee.TextField()  # "benchmark" (every run of it) or "participant" (the owner's own runs)
    benchmark = peewee.TextField(null=True, index=True)  # the benchmark of either scope; None: all of theirs
    url = peewee.TextField()
    secret = peewee.TextField()  # the HMAC key; shown once, at creation
    events = peewee.JSONField(default=list)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "webhook_subscription"


class WebhookDelivery(BaseModel):
    """One event for one subscription: its payload (fixed at enqueue time), attempts and outcome."""

    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)  # the receiver's idempotency key
    subscription = peewee.ForeignKeyField(WebhookSubscription, backref="deliveries", on_delete="CASCADE")
    subscription_id: uuid.UUID
    event = peewee.TextField()
    run_id = peewee.UUIDField(index=True)
    payload = peewee.JSONField()
    status = peewee.TextField(default="pending", index=True)  # pending, delivered, failed (attempts spent)
    attempts = peewee.JSONField(default=list)  # [{number, at, status_code, error, duration_ms, response}]
    next_attempt_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    delivered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "webhook_delivery"
        indexes = ((("subscription", "run_id", "event"), True),)  # one delivery per subscription, run and event


class LadderStep(BaseModel):
    """A derived, recomputable cache: the Ladder's threshold between a run and the best run before it.

    The Ladder (evaluator.ladder) is a function of the runs; computing a step reads both runs'
    predictions, so a board of 10,000 runs would read thousands of files after every restart
    without it. `labels` names the labels it was computed on (dataset id and hash): new labels, new steps.
    """

    id = peewee.BigAutoField()
    benchmark = peewee.TextField(index=True)
    run_id = peewee.UUIDField()
    best_run_id = peewee.UUIDField()
    metric = peewee.TextField()
    part = peewee.TextField()
    labels = peewee.TextField()
    threshold = peewee.DoubleField(null=True)  # null: no standard error for this metric (order statistics)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "ladder_step"
        indexes = ((("run_id", "best_run_id", "metric", "part", "labels"), True),)


ALL_MODELS = (Dataset, Benchmark, Phase, Submission, Run, ObjectEvent, ApiToken, OutboxMessage, BenchmarkRevision,
              WebSession, WebhookSubscription, WebhookDelivery, Team, TeamMember, LadderStep)
