"""The error tree: each class carries DESIGN's stable `code` and an HTTP status."""

from __future__ import annotations

import re

MESSAGE_MAX_CHARS = 4096
# C0/C1 controls, DEL, lone surrogates, line/paragraph separators and the bidi overrides and isolates
# (they reorder what a terminal or a browser shows).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_WHITESPACE = {"\n": " ", "\r": " ", "\t": " "}


def _visible(match: re.Match) -> str:
    char = match.group()
    return _WHITESPACE.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def clean_message(text: object, limit: int = MESSAGE_MAX_CHARS) -> str:
    """Return text safe to store and show: control characters escaped visibly, at most `limit` characters.

    Failure messages quote what a model wrote (row ids, class names, its own error text), so
    they are untrusted: a NUL is refused by PostgreSQL, an escape sequence repaints a terminal,
    and one 64 MiB row id would be carried by every page that lists the run.
    """
    text = str(text)
    cleaned = _UNSAFE.sub(_visible, text[: limit + 1])  # NOTE: escaping only grows text: scan no more than this
    if len(cleaned) <= limit and len(text) <= limit:
        return cleaned
    suffix = " [... message cut]"
    return cleaned[: limit - len(suffix)] + suffix


class EvaluatorError(Exception):
    """Raised for any failure the platform names; the base of the tree.

    The message is cleaned (clean_message) here, once, for every error the platform stores or shows.
    """

    code = "internal"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        message = clean_message(message)
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


# --- request errors (the API answers these) ---------------------------------------


class BadRequest(EvaluatorError):
    """Raised when a request body cannot be parsed at all."""

    code, http_status = "bad_request", 400


class Unauthorized(EvaluatorError):
    """Raised when a request carries no valid bearer token."""

    code, http_status = "unauthorized", 401


class Forbidden(EvaluatorError):
    """Raised when a token is valid but its role may not do this."""

    code, http_status = "forbidden", 403


class NotFound(EvaluatorError):
    """Raised when an object does not exist or the caller may not see it."""

    code, http_status = "not_found", 404


class ObjectMissing(NotFound):
    """Raised by the object store adapter for a key that does not exist (S3 NoSuchKey / 404).

    Never retried: who must act (participant or operator) depends on the object, so the
    caller that knows what it asked for turns it into its own failure (BundleMissing, ...).
    """

    code = "object_missing"


class Conflict(EvaluatorError):
    """Raised when an object already exists or is in the wrong state."""

    code, http_status = "conflict", 409


class PayloadTooLarge(EvaluatorError):
    """Raised when a declared or uploaded size is over the benchmark's limit."""

    code, http_status = "too_large", 413


class ValidationFailed(EvaluatorError):
    """Raised when a field is missing or invalid; `field` names it."""

    code, http_status = "invalid", 422


class KindNotAccepted(ValidationFailed):
    """A bundle sent to a benchmark that takes prediction files only, or the other way round."""

    code = "kind_not_accepted"


class QuotaExceeded(EvaluatorError):
    """Raised when a participant has no submissions left in the window."""

    code, http_status = "quota_exceeded", 429

    def __init__(self, message: str, *, resets_at: str | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at

    def to_dict(self) -> dict:
        return {**super().to_dict(), "resets_at": self.resets_at}


class SubmittedTooSoon(QuotaExceeded):
    """Raised when a participant submits again before the benchmark's minimum interval has passed."""

    code = "too_soon"

    def __init__(self, message: str, *, resets_at: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, resets_at=resets_at)
        self.retry_after_s = retry_after_s


# --- run failures (the participant's fault: a terminal state, never retried) ---------


class RunFailure(EvaluatorError):
    """Raised when a run must end failed with a code the participant can act on.

    A failure raised while the model ran carries what the run keeps of it: the sandbox's
    `log` and the `image_id` it ran in (empty when it never got that far).
    """

    status = "failed"

    def __init__(self, message: str, *, field: str | None = None, log: bytes = b"", image_id: str = "") -> None:
        super().__init__(message, field=field)
        self.log = log
        self.image_id = image_id


class BundleInvalid(RunFailure):
    """Raised when a bundle's archive or manifest is unsafe or malformed."""

    code, http_status = "bundle_invalid", 422


class FrameworkUnsupported(RunFailure):
    """Raised when a manifest names a framework we have no image for."""

    code, http_status = "framework_unsupported", 422


class SandboxTimeout(RunFailure):
    """Raised when the model ran past its wall-clock limit (container killed)."""

    code, status = "timeout", "timed_out"


class OutOfMemory(RunFailure):
    """Raised when the container was OOM-killed."""

    code = "out_of_memory"


class SandboxError(RunFailure):
    """Raised when the in-image program exited non-zero or the image is missing."""

    code = "sandbox_error"


class PredictionsInvalid(RunFailure):
    """Raised when predictions are missing, malformed or misaligned with the labels."""

    code, http_status = "predictions_invalid", 422


class BundleMissing(RunFailure):
    """Raised when the uploaded bundle is no longer in the store (deleted between its event and its run)."""

    code, http_status = "bundle_missing", 404


class DatasetMissing(RunFailure):
    """Raised when a ready dataset's file is gone from the store: the organiser must publish it again."""

    code, http_status = "dataset_missing", 404


class WorkerCrashed(RunFailure):
    """Raised (recorded) when a run's evaluation killed its worker too many times: the poison-pill guard."""

    code = "worker_crashed"


class RunCancelled(RunFailure):
    """Raised when a run was cancelled while it was being evaluated."""

    code, status = "cancelled", "cancelled"


# --- infrastructure (retryable: S3, DB, Docker daemon) -----------------------------


class InfrastructureError(EvaluatorError):
    """Raised when a service we depend on is unavailable; the actor retries."""

    code, http_status = "unavailable", 503


def retryable_types() -> tuple[type[BaseException], ...]:
    """What a retry may cure: ours, and the database driver's and the OS's errors that reach the core as they are.

    The adapters (storage.blobs, sandbox.daemon) turn S3 and Docker errors into InfrastructureError,
    so no botocore or docker type belongs here.
    """
    import peewee  # NOTE: here, not at the top: the CLI imports this module and must start light

    return (InfrastructureError, peewee.OperationalError, peewee.InterfaceError, OSError)


def is_retryable(exception: BaseException) -> bool:
    """True when the failure is the platform's and passing (a retry may succeed), never a participant's."""
    return isinstance(exception, retryable_types()) and not isinstance(exception, RunFailure)


# --- configuration (an entry point refuses to start) -----------------------------


class TooManyStreams(EvaluatorError):
    """Raised when an API process already serves its maximum of event streams (EVALUATOR_SSE_MAX_STREAMS)."""

    code, http_status = "too_many_streams", 503

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfigInvalid(EvaluatorError):
    """Raised when a setting would make the platform unsafe or unusable, before anything starts."""

    code, http_status = "config_invalid", 503
