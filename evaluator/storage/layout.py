"""Object-key layout of DESIGN: datasets/, bundles/, results/ (legible in a bucket browser)."""

from __future__ import annotations

import dataclasses
import re
import uuid

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # NOTE: fullmatch only: `$` matches before a final "\n"
BUNDLE_EXTENSIONS = (".tar.gz", ".tgz", ".zip")
PREDICTIONS_EXTENSIONS = (".csv", ".parquet")  # a predictions file, for benchmarks that accept them
DATA_EXTENSIONS = ("parquet", "csv")

DATASETS_PREFIX = "datasets/"
BUNDLES_PREFIX = "bundles/"
RESULTS_PREFIX = "results/"


def is_slug(value: object) -> bool:
    """Tell whether a value is safe as one path segment of an object key."""
    return isinstance(value, str) and bool(SLUG.fullmatch(value)) and ".." not in value


def dataset_key(name: str, version: str, part: str, file_format: str) -> str:
    """Key of a dataset's `features` or `labels` file."""
    return f"{DATASETS_PREFIX}{name}/{version}/{part}.{file_format}"


def bundle_key(benchmark: str, owner: str, name: str, version: str, submission_id: uuid.UUID | str, ext: str) -> str:
    return f"{BUNDLES_PREFIX}{benchmark}/{owner}/{name}/{version}/{submission_id}{ext}"


def results_prefix(benchmark: str, run_id: uuid.UUID | str) -> str:
    return f"{RESULTS_PREFIX}{benchmark}/{run_id}/"


PLOTS_FOLDER = "plots/"
EXACT_PLOTS_FOLDER = "exact/"
PLOT_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # fullmatch: the names evaluator.plots gives


def plots_prefix(results_prefix: str, *, exact: bool = False) -> str:
    """Folder of a run's plots: participants' at results/<b>/<run>/plots/, managers' under plots/exact/."""
    return results_prefix + PLOTS_FOLDER + (EXACT_PLOTS_FOLDER if exact else "")


def plot_key(results_prefix: str, name: str, ext: str, *, exact: bool = False) -> str:
    """Key of one plot file (<name>.svg, the <name>.json it is drawn from, or index.json)."""
    if not PLOT_NAME.fullmatch(name) or ext not in ("svg", "json"):
        raise ValueError(f"not a plot file: {name[:40]!r}.{ext[:8]}")
    return f"{plots_prefix(results_prefix, exact=exact)}{name}.{ext}"


def bundle_extension(filename: str) -> str | None:
    """Return the bundle extension a filename ends with, or None if it is not a bundle."""
    lowered = filename.lower()
    return next((ext for ext in BUNDLE_EXTENSIONS if lowered.endswith(ext)), None)


def predictions_extension(filename: str) -> str | None:
    """Return the predictions-file extension a filename ends with, or None."""
    lowered = filename.lower()
    return next((ext for ext in PREDICTIONS_EXTENSIONS if lowered.endswith(ext)), None)


def submission_extension(filename: str) -> tuple[str, str] | None:
    """Return (kind, extension) of a submitted file name: ("bundle", ".zip"), ("predictions", ".csv"); or None."""
    ext = bundle_extension(filename)
    if ext is not None:
        return "bundle", ext
    ext = predictions_extension(filename)
    return ("predictions", ext) if ext is not None else None


@dataclasses.dataclass(frozen=True)
class BundleKey:
    benchmark: str
    owner: str
    name: str
    version: str
    stem: str  # the submission id for keys we issued; any file name for objects dropped in by hand
    ext: str


def parse_bundle_key(key: str) -> BundleKey | None:
    """Split bundles/<benchmark>/<owner>/<name>/<version>/<file> into parts; None if it is not one."""
    if not key.startswith(BUNDLES_PREFIX):
        return None
    parts = key[len(BUNDLES_PREFIX):].split("/")
    if len(parts) != 5 or not all(is_slug(p) for p in parts[:4]):
        return None
    found = submission_extension(parts[4])  # NOTE: predictions files live under bundles/ too: one intake path
    if found is None or len(parts[4]) == len(found[1]):
        return None
    ext = found[1]
    return BundleKey(parts[0], parts[1], parts[2], parts[3], stem=parts[4][: -len(ext)], ext=ext)


@dataclasses.dataclass(frozen=True)
class DatasetKey:
    name: str
    version: str
    part: str  # features | labels
    file_format: str


def parse_dataset_key(key: str) -> DatasetKey | None:
    if not key.startswith(DATASETS_PREFIX):
        return None
    parts = key[len(DATASETS_PREFIX):].split("/")
    if len(parts) != 3 or not (is_slug(parts[0]) and is_slug(parts[1])):
        return None
    part, _, fmt = parts[2].partition(".")
    if part not in ("features", "labels") or fmt not in DATA_EXTENSIONS:
        return None
    return DatasetKey(parts[0], parts[1], part, fmt)
