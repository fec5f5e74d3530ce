"""Config: every setting of the platform, read once from EVALUATOR_* variables."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Mapping

from evaluator.errors import ConfigInvalid

_PREFIX = "EVALUATOR_"
# Published in .env.example and docker-compose.yml: never a secret, so never accepted.
EVENTS_TOKEN_PLACEHOLDER = "change-me-events-token"
# Any secret starting with this is a placeholder someone copied, not a secret (.env.example's convention).
SECRET_PLACEHOLDER_PREFIX = "change-me"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings passed down from the entry points; no other module reads os.environ."""

    # Database (PostgreSQL; SQLite only for the embedded default).
    database_url: str = "postgresql://postgres@127.0.0.1:5432/evaluator"
    # Broker.
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_namespace: str = "evaluator"
    broker_heartbeat_timeout_ms: int = 10_000  # every dispatch beats (idle consumers poll each second)
    broker_worker_timeout_ms: int = 100  # an idle consumer waits at most this long for a new message
    broker_maintenance_chance: int = 200_000  # per million commands; a dead worker's messages return in seconds
    # Object store (any S3: SeaweedFS, MinIO, AWS).
    s3_endpoint_url: str = "http://127.0.0.1:8333"
    s3_public_endpoint_url: str = ""  # what clients use for presigned URLs; defaults to s3_endpoint_url
    s3_region: str = "us-east-1"
    s3_access_key: str = "evaluator"
    s3_secret_key: str = "evaluator-secret"
    datasets_bucket: str = "evaluator"
    bundles_bucket: str = "evaluator"
    results_bucket: str = "evaluator"
    # AWS S3 -> SQS notifications, pulled by `evaluator listen-sqs`.
    sqs_queue_url: str = ""
    sqs_endpoint_url: str = ""  # empty: AWS itself
    sqs_wait_s: int = 20
    # Uploads.
    upload_expiry_s: int = 900
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    multipart_part_bytes: int = 16 * 1024 * 1024
    max_bundle_bytes: int = 256 * 1024 * 1024  # default limit of a benchmark
    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    api_threads: int = 8  # request threads per worker; slow clients wait in the poller, not here
    api_header_timeout_s: float = 10.0  # a request head not complete by then is answered 408
    api_body_timeout_s: float = 30.0  # a request body not complete this long after its head: 408
    api_max_body_bytes: int = 1024 * 1024  # every route, the webhook included: larger bodies get 413
    session_ttl_s: int = 8 * 3600  # a browser session (web pages) ends this long after sign-in
    # Browser origins the bundles bucket accepts uploads from (its CORS rules; comma-separated).
    # Empty: the origin of api_base_url, where the web pages are served.
    web_origins: str = ""
    api_url: str = ""  # how workers/CLI reach the API; defaults to http://api_host:api_port
    events_token: str = ""  # the store's webhook secret; required (check_events_token)
    token: str = ""  # the CLI client's API token (`evaluator submit`, `runs`, ...)
    # Where `evaluator login` keeps the API URL and token (mode 600); from_env defaults it to
    # $XDG_CONFIG_HOME/evaluator/config.json (~/.config/... without XDG_CONFIG_HOME). Empty: none.
    client_config_file: str = ""
    # Sandbox.
    image_prefix: str = "evaluator-"
    base_image: str = "python:3.11-slim"
    wheelhouse: str = ""  # host folder of wheels for offline image builds
    sandbox_timeout_s: int = 600
    sandbox_memory: str = "2g"
    sandbox_cpus: float = 1.0
    sandbox_pids: int = 256
    sandbox_output_bytes: int = 256 * 1024 * 1024
    sandbox_tmp_bytes: int = 256 * 1024 * 1024  # size of the sandbox's /tmp tmpfs (it counts against memory)
    sandbox_log_bytes: int = 64 * 1024
    sandbox_runtime: str = ""  # a Docker runtime for sandboxes, e.g. runsc (gVisor); empty: the daemon's default
    sandbox_gpus: int = 0  # default GPUs per sandbox (a benchmark's limits.gpus overrides it)
    sandbox_backend: str = "docker"  # docker: containers on this worker's Docker; kubernetes: one Job per run
    sandbox_pool_size: int = 1  # warm single-use containers per pooled image and worker process (0: all cold; README)
    sandbox_pool_images: str = "sklearn"  # comma-separated images (sklearn, onnx, pytorch, tensorflow) to pool
    work_dir: str = "/tmp/evaluator-runs"
    images_dir: str = ""  # the build contexts to build from; defaults to the package's evaluator/images/
    rootfs_dir: str = "/var/cache/evaluator/rootfs-bookworm"  # debootstrap root of the base image
    # Kubernetes runner (sandbox_backend=kubernetes; README "Running on Kubernetes").
    k8s_kubeconfig: str = ""  # a kubeconfig file; empty: the pod's in-cluster service account
    k8s_namespace: str = "evaluator-sandboxes"
    k8s_runtime_class: str = ""  # a RuntimeClass for sandbox pods (e.g. gvisor); empty: the cluster's default
    k8s_store_cidr: str = ""  # the object store's address as the pods see it: the only egress allowed
    k8s_store_port: int = 0
    k8s_ttl_after_finished_s: int = 300
    # Scoring: untrusted predictions are scored in a child process with these limits.
    scoring_memory_bytes: int = 1 << 30  # its RLIMIT_DATA; past it the run ends predictions_invalid
    scoring_timeout_s: int = 3600
    scoring_standby: int = 1  # 1: each worker process keeps a scoring fork server (imports done); 0: none
    # Plots: the fewest rows a bin of a participant's plot holds is max(this, n / 20) (see evaluator.plots).
    plot_min_bin_rows: int = 50
    # Worker.
    evaluate_max_retries: int = 5  # infrastructure failures only; then the run ends failed/internal
    lease_s: int = 30  # a run's lease lasts this long past its last renewal; then another worker takes over
    lease_renew_s: float = 5.0  # renewal interval: a database outage shorter than lease_s - this is ridden out
    max_worker_crashes: int = 2  # a run whose worker died this many times ends failed/worker_crashed
    deployment_id: str = ""  # labels this deployment's sandbox containers; empty: the broker namespace
    # Run queues this worker consumes (comma list of cpu, runsc, gpu; README "Scale-out"). Empty: detected
    # from the Docker daemon: cpu always, runsc / gpu when it lists that runtime (runsc, nvidia).
    worker_capabilities: str = ""
    # Testing aid, off by default: hold every attempt at this phase (preparing, running, scoring, publishing:
    # before writing results, recording: after writing metrics.json, before recording the run) for
    # fault_pause_s, so a fault test can kill or stop its worker there. Never set it in production.
    fault_pause_at: str = ""
    fault_pause_s: float = 600.0
    # Reconciler.
    reconcile_queued_after_s: int = 300
    reconcile_active_after_s: int = 1800
    reconcile_interval_s: int = 60
    reconcile_full_interval_s: int = 3600  # the periodic pass lists all of bundles/ at most this often (0: each)
    reconcile_uploads_interval_s: float = 3.0  # HEAD the keys of submissions awaiting their upload (0: off)
    # Outbox relay (API and worker processes).
    outbox_relay_interval_s: float = 1.0  # send what intake committed but could not send (broker down)
    outbox_check_interval_s: float = 5.0  # compare queued runs with the broker's messages (0: off)
    outbox_resend_after_s: float = 10.0  # a queued run the broker holds no message for is re-sent after this
    # Outgoing webhooks (run.finished, HMAC-SHA256 signed; see README "Webhooks").
    webhook_allow_private: int = 0  # 1: let subscriptions target loopback/private/link-local hosts (SSRF: off)
    webhook_timeout_s: float = 10.0  # connect and read timeout of one delivery attempt
    webhook_max_attempts: int = 8  # then the delivery is marked failed
    webhook_min_backoff_s: float = 10.0  # the first retry's delay; it doubles per attempt (with jitter)
    webhook_max_backoff_s: float = 3600.0
    # Server-sent events (GET /v1/runs/{id}/events).
    sse_max_streams: int = 4  # concurrent streams per API worker process (each holds a thread); beyond: 503
    sse_max_duration_s: float = 300.0  # a stream ends after this; the client resumes with Last-Event-ID
    sse_poll_s: float = 0.5  # how often a stream reads its run (one primary-key SELECT)
    sse_heartbeat_s: float = 15.0  # a comment line when nothing else was sent for this long
    # Observability (README "Metrics"): prometheus_client's multiprocess files, worker heartbeats.
    metrics_dir: str = ""  # this host's sample files; empty: <tmp>/evaluator-metrics/<deployment>
    worker_heartbeat_s: float = 5.0  # each worker process writes its heartbeat to Redis this often
    worker_stale_s: float = 30.0  # a heartbeat older than this is gone: /health says degraded when none is left
    worker_metrics_port: int = 0  # a worker host's own /metrics (Dramatiq's exposition server); 0: off
    worker_metrics_host: str = "127.0.0.1"
    # Embedded default (`evaluator dev`).
    data_dir: str = ".evaluator"
    dev_s3_max_restarts: int = 3  # SeaweedFS crashes `evaluator dev` restarts within 10 minutes, then it stops
    log_level: str = "INFO"

    @property
    def presign_endpoint_url(self) -> str:
        """Return the endpoint clients will use: the Host header is signed."""
        return self.s3_public_endpoint_url or self.s3_endpoint_url

    @property
    def deployment(self) -> str:
        """Return the id a worker's sweep of sandbox containers is limited to."""
        return self.deployment_id or self.broker_namespace

    def check_events_token(self) -> None:
        """Refuse an empty or published events token: it decides who may start evaluations."""
        token = self.events_token.strip()
        if not token or token.lower().startswith(EVENTS_TOKEN_PLACEHOLDER[:9]):
            raise ConfigInvalid(
                f"EVALUATOR_EVENTS_TOKEN is {'the published placeholder' if token else 'not set'}; set it to a "
                "random secret (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) and give "
                "the same value to the object store's webhook")

    def check_secrets(self) -> None:
        """Refuse placeholder secrets before a deployed process starts: the events token, the S3 secret key and
        the database password (a `change-me...` value copied from an example is known to everyone)."""
        self.check_events_token()
        from urllib.parse import urlsplit

        placeholders = [name for name, value in (
            ("EVALUATOR_S3_SECRET_KEY", self.s3_secret_key),
            ("the password in EVALUATOR_DATABASE_URL", urlsplit(self.database_url).password or ""),
        ) if value.strip().lower().startswith(SECRET_PLACEHOLDER_PREFIX)]
        if placeholders:
            raise ConfigInvalid(f"{' and '.join(placeholders)} is a placeholder ({SECRET_PLACEHOLDER_PREFIX}...); "
                                "set a random secret (e.g. `openssl rand -hex 24`)")

    @property
    def metrics_folder(self) -> str:
        """Return the folder this host's processes keep their Prometheus samples in (one per deployment)."""
        return self.metrics_dir or os.path.join(tempfile.gettempdir(), "evaluator-metrics", self.deployment)

    @property
    def api_base_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def cors_origins(self) -> list[str]:
        """The origins the web pages upload from: web_origins, else the API's own (scheme://host:port)."""
        listed = [origin.strip().rstrip("/") for origin in self.web_origins.split(",") if origin.strip()]
        if listed:
            return listed
        scheme, _, rest = self.api_base_url.partition("://")
        return [f"{scheme}://{rest.split('/', 1)[0]}"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build a Config from EVALUATOR_<FIELD> variables, falling back to defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(_PREFIX + field.name.upper())
            if raw is None:
                continue
            kind = field.type if isinstance(field.type, type) else {"int": int, "float": float}.get(field.type, str)
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{_PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        if "client_config_file" not in values:
            base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                                  ".config")
            values["client_config_file"] = os.path.join(base, "evaluator", "config.json")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Render as EVALUATOR_* variables: how a parent process configures its children."""
        return {_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)
