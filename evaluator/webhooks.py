"""Outgoing webhooks: signed `run.finished` POSTs to the URLs benchmark managers and participants subscribe.

Exactly once per terminal state: runs.finish records the final state with a
compare-and-set, and in the same transaction `enqueue_run_finished` writes one
delivery row per matching subscription and one outbox message per delivery
(evaluator.outbox). The relay sends the message after the commit, a crash
before the commit leaves neither, and the unique (subscription, run, event)
index refuses a second delivery. The `deliver_webhook` actor then POSTs it and
reschedules itself with exponential backoff until the receiver answers 2xx or
the attempts are spent; the receiver deduplicates on the delivery id, which a
retry (or a redelivered broker message) repeats. SIGNATURE_SCHEME: how receivers
check a delivery, and how the platform guards itself against receivers.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
import uuid
from urllib.parse import urlsplit

import requests

from evaluator import competition, outbox, runs
from evaluator.config import Config
from evaluator.errors import Forbidden, NotFound, ValidationFailed, clean_message
from evaluator.storage.db import database, rows
from evaluator.storage.models import (
    Benchmark,
    Run,
    WebhookDelivery,
    WebhookSubscription,
    isoformat,
    utcnow,
)
from evaluator.tokens import Principal

logger = logging.getLogger(__name__)

SIGNATURE_SCHEME = """\
Each delivery is a POST of JSON {id, event, created_at, data: {run}} with the headers
`Evaluator-Delivery` (the delivery id: deduplicate on it, retries repeat it),
`Evaluator-Event` and the signature, as Stripe's: the header `Evaluator-Signature: t=<unix seconds>,v1=<hex>`
where hex = HMAC-SHA256(secret, f"{t}.{body}"). Receivers recompute it over the
raw body, compare in constant time and refuse an old `t`.

Receivers are hostile too: a bounded timeout, no redirects followed, at most
512 bytes of the answer read (escaped, stored as a snippet). Targets
must be http(s); loopback, private, link-local and reserved addresses are refused
unless EVALUATOR_WEBHOOK_ALLOW_PRIVATE=1 (both when subscribing and before every
attempt, against what the name resolves to then), so a subscription cannot make
the platform call its own internal services.
"""

RUN_FINISHED = "run.finished"
EVENTS = (RUN_FINISHED,)
SIGNATURE_HEADER = "Evaluator-Signature"
DELIVERY_HEADER = "Evaluator-Delivery"
EVENT_HEADER = "Evaluator-Event"
RESPONSE_SNIPPET_BYTES = 512  # what is kept of a receiver's answer: enough to see an error, never a payload
MAX_SUBSCRIPTIONS = 20  # per owner
LOG_LIMIT = 100  # deliveries shown per page of a log
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


# --- signing --------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Return the signature header's value for this body at this time: `t=<unix>,v1=<hex>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """Check a signature header as a receiver should: the MAC in constant time, a `t` not older than tolerance."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def encode(payload: dict) -> bytes:
    """The body as sent: compact JSON with sorted keys, so every attempt sends the same bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


# --- target URLs ----------------------------------------------------------------------------


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """Refuse what is not http(s) with a host, and (unless allowed) hosts resolving to non-public addresses.

    Raises:
        ValidationFailed: naming the field `url`.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("'url' must be an http:// or https:// URL with a host", field="url")
    if parts.username or parts.password:
        raise ValidationFailed("'url' must not carry credentials; the signature authenticates the platform",
                               field="url")
    if allow_private or not resolve:
        return url
    for address in _addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
        if not address.is_global or address.is_multicast:
            raise ValidationFailed(
                f"'url' resolves to {address}, a loopback, private, link-local or reserved address; such targets "
                "are refused unless the operator sets EVALUATOR_WEBHOOK_ALLOW_PRIVATE=1", field="url")
    return url


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ValidationFailed(f"'url' names a host that does not resolve ({clean_message(host, 100)})",
                               field="url") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


# --- subscriptions --------------------------------------------------------------------------


def create_subscription(principal: Principal, *, url: str, benchmark: str | None, scope: str,
                        events: list[str], config: Config) -> tuple[WebhookSubscription, str]:
    """Subscribe a URL; returns the row and its secret (shown this once).

    scope "benchmark": every run of `benchmark`, for the benchmark's managers (exact scores).
    scope "participant": the caller's own runs (of `benchmark`, or of every benchmark), scores as they see them.
    """
    check_url(url, allow_private=bool(config.webhook_allow_private))
    if scope == "benchmark":
        if not benchmark:
            raise ValidationFailed("'benchmark' is required for a benchmark subscription", field="benchmark")
        row = Benchmark.get_or_none(Benchmark.id == benchmark)
        if row is None:
            raise NotFound(f"benchmark {benchmark} not found")
        if not competition.manages(row, principal):
            raise Forbidden(f"only the managers of benchmark {benchmark} may subscribe to all its runs; "
                            "subscribe with scope 'participant' to your own")
    elif benchmark and Benchmark.get_or_none(Benchmark.id == benchmark) is None:
        raise NotFound(f"benchmark {benchmark} not found")
    if WebhookSubscription.select().where(WebhookSubscription.owner == principal.owner).count() >= MAX_SUBSCRIPTIONS:
        raise ValidationFailed(f"at most {MAX_SUBSCRIPTIONS} webhook subscriptions per owner; delete one first",
                               field="url")
    secret = "whsec_" + secrets.token_urlsafe(32)
    created = WebhookSubscription.create(owner=principal.owner, role=principal.role, scope=scope, benchmark=benchmark,
                                         url=url, secret=secret, events=list(dict.fromkeys(events or EVENTS)))
    return created, secret


def visible_subscriptions(principal: Principal):  # type: ignore[no-untyped-def]
    """Owners see their own subscriptions; admins see everyone's."""
    query = WebhookSubscription.select()
    return query if principal.is_admin else query.where(WebhookSubscription.owner == principal.owner)


def get_subscription(subscription_id: str, principal: Principal) -> WebhookSubscription:
    try:
        key = uuid.UUID(str(subscription_id))
    except ValueError:
        raise NotFound(f"webhook {subscription_id} not found") from None
    row = visible_subscriptions(principal).where(WebhookSubscription.id == key).first()
    if row is None:
        raise NotFound(f"webhook {subscription_id} not found")
    return row


def delete_subscription(subscription_id: str, principal: Principal) -> None:
    """Delete a subscription and its log; a delivery already on its way finds nothing and stops."""
    row = get_subscription(subscription_id, principal)
    WebhookSubscription.delete().where(WebhookSubscription.id == row.id).execute()


def serialize_subscription(row: WebhookSubscription, secret: str | None = None) -> dict:
    shaped = {"id": str(row.id), "owner": row.owner, "scope": row.scope, "benchmark": row.benchmark,
              "url": row.url, "events": list(row.events or []), "created_at": isoformat(row.created_at)}
    if secret is not None:
        shaped["secret"] = secret
    return shaped


def deliveries(subscription_id: str, principal: Principal, *, limit: int = 50, offset: int = 0
               ) -> tuple[list[WebhookDelivery], int]:
    row = get_subscription(subscription_id, principal)
    query = WebhookDelivery.select().where(WebhookDelivery.subscription == row.id)
    total = query.count()
    return list(query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
                .limit(min(limit, LOG_LIMIT)).offset(offset)), total


def serialize_delivery(row: WebhookDelivery) -> dict:
    return {"id": str(row.id), "subscription": str(row.subscription_id), "event": row.event,
            "run_id": str(row.run_id), "status": row.status, "attempts": list(row.attempts or []),
            "next_attempt_at": isoformat(row.next_attempt_at), "created_at": isoformat(row.created_at),
            "delivered_at": isoformat(row.delivered_at)}


# --- enqueueing -----------------------------------------------------------------------------


def enqueue_run_finished(run_id: str) -> list[str]:
    """Write a delivery (and its outbox message) per subscription the run's end concerns; returns their ids.

    Call it in the transaction that records the terminal state: the payload is
    fixed now (what the receiver may see of the run as it ended).
    """
    run = Run.get_or_none(Run.id == run_id)
    if run is None:
        return []
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    by_benchmark = (WebhookSubscription.scope == "benchmark") & (WebhookSubscription.benchmark == run.benchmark_id)
    own = ((WebhookSubscription.scope == "participant") & (WebhookSubscription.owner == run.owner)
           & (WebhookSubscription.benchmark.is_null() | (WebhookSubscription.benchmark == run.benchmark_id)))
    created = []
    for subscription in WebhookSubscription.select().where(by_benchmark | own):
        if RUN_FINISHED not in (subscription.events or []):
            continue
        principal = Principal(subscription.owner, subscription.role)
        if subscription.scope == "benchmark" and not competition.manages(benchmark, principal):
            continue  # no longer a manager (the benchmark changed hands): sees nothing of others' runs
        exists = (WebhookDelivery.select(WebhookDelivery.id).where(
            (WebhookDelivery.subscription == subscription.id) & (WebhookDelivery.run_id == run.id)
            & (WebhookDelivery.event == RUN_FINISHED)).exists())
        if exists:
            continue
        delivery_id = uuid.uuid4()
        payload = {"id": str(delivery_id), "event": RUN_FINISHED, "created_at": isoformat(utcnow()),
                   "data": {"run": _run_view(run, benchmark, subscription, principal)}}
        WebhookDelivery.create(id=delivery_id, subscription=subscription.id, event=RUN_FINISHED, run_id=run.id,
                               payload=payload, next_attempt_at=utcnow())
        outbox.add("deliver_webhook", str(delivery_id))
        created.append(str(delivery_id))
    return created


def _run_view(run: Run, benchmark: Benchmark, subscription: WebhookSubscription, principal: Principal) -> dict:
    """The run as this receiver may see it: managers exact; a participant's scores rounded (disclosure)."""
    manager = subscription.scope == "benchmark"
    shaped = runs.serialize(run, show_private=manager or competition.shows_private(benchmark, principal),
                            manager=manager, hide_public=not manager and competition.ladder_hides(benchmark, principal))
    keep = ("id", "submission", "benchmark", "owner", "status", "failure", "metrics", "private_metrics", "attempts",
            "timestamps")
    return {key: shaped[key] for key in keep}


# --- delivering -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Attempt:
    """What one POST gave: an HTTP status, or the error that prevented one."""

    status_code: int | None
    error: str | None
    duration_ms: int
    response: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allow_private: bool) -> Attempt:
    """POST once: bounded timeout, no redirects, at most RESPONSE_SNIPPET_BYTES of the answer read."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        check_url(url, allow_private=allow_private)  # again: what the name resolves to may have changed
    except ValidationFailed as ex:
        return Attempt(None, ex.message, took(), "")
    try:
        with requests.post(url, data=body, headers=headers, timeout=(min(5.0, timeout_s), timeout_s),
                           allow_redirects=False, stream=True) as response:
            snippet = response.raw.read(RESPONSE_SNIPPET_BYTES, decode_content=False) or b""
            status = response.status_code
    except requests.Timeout:
        return Attempt(None, f"no answer within {timeout_s:g} s", took(), "")
    except requests.RequestException as ex:
        return Attempt(None, clean_message(f"{type(ex).__name__}: {ex}", 300), took(), "")
    text = clean_message(snippet.decode("utf-8", "replace"), 200)
    error = None
    if 300 <= status < 400:
        error = f"answered {status} (a redirect); redirects are not followed: subscribe the final URL"
    elif not 200 <= status < 300:
        error = f"answered {status}"
    return Attempt(status, error, took(), text)


def backoff_s(attempt: int, config: Config) -> float:
    """Delay after the `attempt`-th failure: min_backoff * 2**(attempt-1), capped, with +-20% jitter."""
    base = min(config.webhook_max_backoff_s, config.webhook_min_backoff_s * 2 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What deliver() did: nothing (gone, or done), delivered, or failed with a retry after `retry_in_s`."""

    status: str  # skipped, delivered, retry, failed
    retry_in_s: float | None = None


def deliver(delivery_id: str, *, config: Config) -> Outcome:
    """Make one attempt at a pending delivery and record it; the caller schedules the retry it asks for.

    The attempt is claimed first (a compare-and-set on the number of attempts):
    two messages for one delivery (a redelivery after a crash) never POST at once.
    """
    with database.atomic():
        row = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
        if row is None or row.status != PENDING:
            return Outcome("skipped")
        subscription = WebhookSubscription.get_or_none(WebhookSubscription.id == row.subscription_id)
        if subscription is None:
            return Outcome("skipped")
        number = len(row.attempts or []) + 1
        claim_until = utcnow() + datetime.timedelta(seconds=config.webhook_timeout_s * 2 + 30)
        claimed = (WebhookDelivery.update(next_attempt_at=claim_until)
                   .where((WebhookDelivery.id == row.id) & (WebhookDelivery.status == PENDING)
                          & (WebhookDelivery.next_attempt_at == row.next_attempt_at)).execute())
        if not claimed:
            return Outcome("skipped")
    body = encode(row.payload)
    headers = {"Content-Type": "application/json", "User-Agent": "evaluator-webhooks/1",
               SIGNATURE_HEADER: sign(subscription.secret, body, int(time.time())),
               DELIVERY_HEADER: str(row.id), EVENT_HEADER: row.event}
    attempt = post(subscription.url, body, headers, timeout_s=config.webhook_timeout_s,
                   allow_private=bool(config.webhook_allow_private))
    now = utcnow()
    record = {"number": number, "at": isoformat(now), "status_code": attempt.status_code, "error": attempt.error,
              "duration_ms": attempt.duration_ms, "response": attempt.response}
    history = [*(row.attempts or []), record][-config.webhook_max_attempts:]
    if attempt.ok:
        status, retry_in, next_at = DELIVERED, None, None
    elif number >= config.webhook_max_attempts:
        status, retry_in, next_at = FAILED, None, None
    else:
        retry_in = backoff_s(number, config)
        status, next_at = PENDING, now + datetime.timedelta(seconds=retry_in)
    (WebhookDelivery.update(status=status, attempts=history, next_attempt_at=next_at,
                            delivered_at=now if status == DELIVERED else None)
     .where(WebhookDelivery.id == row.id).execute())
    log = logger.info if attempt.ok else logger.warning
    log("Webhook delivery %s (run %s) attempt %d to %s: %s", row.id, row.run_id, number,
        urlsplit(subscription.url).netloc, attempt.error or attempt.status_code)
    if status == PENDING:
        return Outcome("retry", retry_in)
    return Outcome(status)


def resend_stalled(*, older_than_s: float = 120.0, limit: int = 100) -> list[str]:
    """Re-add outbox messages for pending deliveries whose next attempt is long overdue (a lost retry message).

    A retry waits in the broker as a delayed message; a Redis that lost its data
    loses it too. The attempt's claim makes a duplicate message harmless.
    """
    cutoff = utcnow() - datetime.timedelta(seconds=older_than_s)
    stalled = [str(delivery_id) for (delivery_id,) in rows(WebhookDelivery.select(WebhookDelivery.id).where(
        (WebhookDelivery.status == PENDING) & (WebhookDelivery.next_attempt_at < cutoff))
        .order_by(WebhookDelivery.next_attempt_at).limit(limit).tuples())]
    with database.atomic():
        for delivery_id in stalled:
            outbox.add("deliver_webhook", delivery_id)
            (WebhookDelivery.update(next_attempt_at=utcnow()).where(WebhookDelivery.id == delivery_id).execute())
    if stalled:
        logger.warning("Re-sent %d webhook deliveries whose retry was overdue", len(stalled))
    return stalled
