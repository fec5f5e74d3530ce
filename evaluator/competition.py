"""Competition rules of a benchmark: schedule, tie-breaks, final selections, log policy, label split.

Settings live in Benchmark.settings; this module validates them and answers
the questions the API asks (is it open? may this caller see private scores?).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from evaluator import fields
from evaluator.errors import Conflict, Forbidden, ValidationFailed
from evaluator.settings import SUBMISSION_KINDS
from evaluator.settings import settings_of as competition_settings
from evaluator.storage.models import Benchmark, Phase, Run, RunStatus, Submission, utcnow
from evaluator.tokens import Principal

LOG_POLICIES = ("own", "tail", "none")
TAIL_BYTES = 4096


def parse_settings(body: dict, metric_names: tuple[str, ...], primary: str) -> dict:
    raw = fields.mapping(body, "settings", {})
    settings: dict[str, Any] = {
        "tie_breakers": fields.string_list(raw, "tie_breakers", [], allowed=[m for m in metric_names if m != primary]),
        "opens_at": _timestamp(raw, "opens_at"),
        "closes_at": _timestamp(raw, "closes_at"),
        "log_policy": fields.choice(raw, "log_policy", LOG_POLICIES, "own"),
        "final_selections": fields.integer(raw, "final_selections", 0, minimum=0, maximum=100),
        "private_fraction": _fraction(raw, "private_fraction"),
        "submission_kinds": fields.string_list(raw, "submission_kinds", ["bundle"], allowed=list(SUBMISSION_KINDS)),
        "freeze_at": _timestamp(raw, "freeze_at"),
        "freeze_before_close_s": fields.integer(raw, "freeze_before_close_s", None, minimum=1,
                                                maximum=366 * 24 * 3600),
        "significance_level": _level(raw, "significance_level"),
        "ladder": _flag(raw, "ladder"),
        "min_submission_interval_s": fields.integer(raw, "min_submission_interval_s", None, minimum=1,
                                                    maximum=30 * 24 * 3600),
        "teams": _flag(raw, "teams"),
        "max_team_size": fields.integer(raw, "max_team_size", None, minimum=1, maximum=1000),
    }
    if not settings["submission_kinds"]:
        raise ValidationFailed("'settings.submission_kinds' must name at least one of "
                               f"{list(SUBMISSION_KINDS)}", field="settings.submission_kinds")
    settings["submission_kinds"] = [k for k in SUBMISSION_KINDS if k in settings["submission_kinds"]]
    if settings["freeze_before_close_s"] and not settings["closes_at"]:
        raise ValidationFailed("'settings.freeze_before_close_s' needs 'settings.closes_at'",
                               field="settings.freeze_before_close_s")
    if settings["opens_at"] and settings["closes_at"] and settings["closes_at"] <= settings["opens_at"]:
        raise ValidationFailed("'settings.closes_at' must be after 'settings.opens_at'", field="settings.closes_at")
    return settings


def _flag(raw: dict, field: str) -> bool:
    value = raw.get(field, False)
    if not isinstance(value, bool):
        raise ValidationFailed(f"'settings.{field}' must be true or false", field=f"settings.{field}")
    return value


def instant(raw: dict, field: str, *, within: str) -> datetime.datetime | None:
    """An ISO 8601 time of a body's object `within` (a trailing Z or an offset allowed) as naive UTC."""
    value = raw.get(field)
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"'{within}.{field}' must be an ISO 8601 time", field=f"{within}.{field}") from None
    return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _timestamp(raw: dict, field: str) -> str | None:
    parsed = instant(raw, field, within="settings")
    return None if parsed is None else parsed.isoformat()


def _fraction(raw: dict, field: str) -> float | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValidationFailed(f"'settings.{field}' must be a number between 0 and 1", field=f"settings.{field}")
    return float(value)


def _level(raw: dict, field: str) -> float:
    value = raw.get(field)
    if value is None or value == 0:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
        raise ValidationFailed(f"'settings.{field}' must be 0 (off) or a level between 0 and 0.5, e.g. 0.05",
                               field=f"settings.{field}")
    return float(value)


def settings_of(benchmark: Benchmark) -> dict:
    """The settings as the API shows them, defaults filled in (code reads settings.settings_of instead)."""
    return competition_settings(benchmark).to_dict()


def _at(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


def is_closed(benchmark: Benchmark, now: datetime.datetime | None = None) -> bool:
    closes = _at(competition_settings(benchmark).closes_at)
    return closes is not None and (now or utcnow()) >= closes


def check_open(benchmark: Benchmark, now: datetime.datetime | None = None) -> None:
    """Refuse a submission outside the benchmark's open window."""
    settings, now = competition_settings(benchmark), now or utcnow()
    opens = _at(settings.opens_at)
    if opens is not None and now < opens:
        raise Conflict(f"benchmark {benchmark.id} opens at {settings.opens_at}Z")
    if is_closed(benchmark, now):
        raise Conflict(f"benchmark {benchmark.id} closed at {settings.closes_at}Z")


def manages(benchmark: Benchmark, principal: Principal | None) -> bool:
    """Admins and the benchmark's owner see everything of it, private scores included."""
    return principal is not None and (principal.is_admin or benchmark.owner == principal.owner)


def frozen_since(benchmark: Benchmark, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """The freeze instant while the benchmark is in its frozen window (frozen until it closes), else None."""
    now = now or utcnow()
    since = competition_settings(benchmark).freezes_at()
    if since is None or now < since or is_closed(benchmark, now):
        return None
    return since


def ladder_hides(benchmark: Benchmark, principal: Principal | None) -> bool:
    """Under settings.ladder a participant reads public scores only from the board while it is open.

    A run's own public score (its metrics, plots, a comparison) would be exactly the per-submission
    feedback the Ladder withholds (evaluator.ladder); managers and, after the close, everyone see them.
    """
    return competition_settings(benchmark).ladder and not manages(benchmark, principal) and not is_closed(benchmark)


def shows_private(benchmark: Benchmark, principal: Principal | None) -> bool:
    return manages(benchmark, principal) or is_closed(benchmark)


def select_final(run: Run, principal: Principal, selected: bool) -> Run:
    """Mark (or unmark) one of the caller's succeeded runs as a final selection, before close."""
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    limit = competition_settings(benchmark).final_selections
    if not limit:
        raise Conflict(f"benchmark {benchmark.id} does not use final selections")
    if is_closed(benchmark):
        raise Conflict(f"benchmark {benchmark.id} is closed; selections are frozen")
    phase = Phase.get_or_none(Phase.id == run.phase_id) if run.phase_id is not None else None
    if phase is not None and phase.closes_at is not None and utcnow() >= phase.closes_at:
        raise Conflict(f"phase {phase.slug} of benchmark {benchmark.id} is closed; its selections are frozen")
    if run.status != RunStatus.SUCCEEDED.value:
        raise Conflict(f"only a succeeded run can be selected; this one is {run.status}")
    if selected and not run.final:
        team_id = run.submission.team_id if competition_settings(benchmark).teams else None
        entrant = (Run.owner == run.owner if team_id is None  # NOTE: a team's members share its selections
                   else Run.submission.in_(Submission.select(Submission.id).where(Submission.team == team_id)))
        same_phase = Run.phase.is_null() if run.phase_id is None else Run.phase == run.phase_id  # per phase
        chosen = Run.select().where((Run.benchmark == benchmark.id) & entrant & Run.final & same_phase).count()
        if chosen >= limit:
            who = "you" if team_id is None else "your team"
            raise Conflict(f"{who} already selected {chosen} of {limit} final runs; unselect one first")
    Run.update(final=selected, updated_at=utcnow()).where(Run.id == run.id).execute()  # the board cache's stamp
    return Run.get_by_id(run.id)


def is_private_row(row_id: object, benchmark_id: str, fraction: float) -> bool:
    """Assign a row to the private part, stably: the same row, benchmark and fraction, the same answer."""
    digest = hashlib.sha256(f"{benchmark_id}\x00{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def log_view(benchmark: Benchmark, principal: Principal, log: bytes) -> bytes:
    """Apply the benchmark's log policy for a participant (managers see the whole log)."""
    if manages(benchmark, principal):
        return log
    policy = competition_settings(benchmark).log_policy
    if policy == "none":
        raise Forbidden(f"benchmark {benchmark.id} does not show sandbox logs to participants")
    return log[-TAIL_BYTES:] if policy == "tail" else log
