"""Constrained field types shared by the models, each with the sentence a refusal shows."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

from pydantic import AfterValidator, Field, StringConstraints

from evaluator.sandbox.frameworks import FRAMEWORKS
from evaluator.scoring.document import metric_names
from evaluator.storage.models import Role, RunStatus

# Lookahead-free (hypothesis and Rust's regex both take it): dot-separated runs, never "..".
SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.?$"
NOT_BLANK_PATTERN = r"\S"
# A bundle (.tar.gz, .tgz, .zip) or, for a benchmark that accepts them, a predictions file (.csv, .parquet)
BUNDLE_NAME_PATTERN = (r"\.([Tt][Aa][Rr]\.[Gg][Zz]|[Tt][Gg][Zz]|[Zz][Ii][Pp]|[Cc][Ss][Vv]"
                       r"|[Pp][Aa][Rr][Qq][Uu][Ee][Tt])$")
MEMORY_PATTERN = r"^[0-9]{1,12}[KkMmGg]$"
TEAM_NAME_PATTERN = r"^\w([\w .'-]*[\w.'-])?$"  # evaluator.teams checks the same
MAX_JSON_INTEGER = 2**53  # beyond this a JavaScript client (and jsonb comparisons) lose precision

# What a pattern mismatch means, in words (pydantic would print the regex).
PATTERN_RULES = {
    SLUG_PATTERN: "must be 1-100 characters of letters, digits, '.', '_' or '-', starting with a letter or digit, "
                  "without '..'",
    NOT_BLANK_PATTERN: "must not be blank",
    BUNDLE_NAME_PATTERN: "must end with .tar.gz, .tgz or .zip (a bundle) or .csv or .parquet (predictions)",
    MEMORY_PATTERN: "must look like 512m or 2g",
    TEAM_NAME_PATTERN: "must be letters, digits, spaces and . ' _ -, starting with a letter or digit",
}

Slug = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=SLUG_PATTERN)]


def text(max_length: int = 500):
    """A non-blank string of at most max_length characters."""
    return Annotated[str, StringConstraints(min_length=1, max_length=max_length, pattern=NOT_BLANK_PATTERN)]


# The sizes the models use, spelled out so a type checker reads them as types (a call is not one).
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK_PATTERN)]
Text300 = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=NOT_BLANK_PATTERN)]
Text500 = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NOT_BLANK_PATTERN)]
Text2000 = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NOT_BLANK_PATTERN)]


def _utc_iso(value: str) -> str:
    """Parse an ISO 8601 time as the competition settings store it: naive UTC."""
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 time, e.g. 2030-01-31T12:00:00Z") from None
    return parsed.isoformat()


Timestamp = Annotated[str, StringConstraints(max_length=64), AfterValidator(_utc_iso),
                      Field(json_schema_extra={"format": "date-time"})]
Count = Annotated[int, Field(ge=1, le=MAX_JSON_INTEGER)]

Task = Literal["classification", "regression"]
if TYPE_CHECKING:  # built from the tables at run time, which a type checker cannot evaluate: strings to it
    Metric: TypeAlias = str
    RoleName: TypeAlias = str
    RunStatusName: TypeAlias = str
    Framework: TypeAlias = str
else:
    Metric = Literal[tuple(dict.fromkeys(metric_names("classification") + metric_names("regression")))]
    RoleName = Literal[tuple(r.value for r in Role)]
    RunStatusName = Literal[tuple(s.value for s in RunStatus)]
    Framework = Literal[FRAMEWORKS]
Visibility = Literal["public", "participants", "private"]
LogPolicy = Literal["own", "tail", "none"]
QuotaWindow = Literal["utc_day", "rolling_24h"]
UploadMethod = Literal["put", "post", "multipart"]
DataFormat = Literal["parquet", "csv"]
SubmissionKind = Literal["bundle", "predictions"]

# A time as the API writes it: ISO 8601 in UTC without an offset (not RFC 3339's date-time), or null.
Time = Annotated[str | None, Field(description="ISO 8601, UTC, no offset")]
