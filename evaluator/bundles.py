"""Model bundles: safe extraction of .tar.gz/.zip archives and manifest validation.

A bundle is untrusted. Extraction never lets the archive choose where a byte
lands or what kind of file it becomes: only regular files and folders under the
destination are written, by us, with fixed permissions. Sizes, counts and the
compression ratio are measured on the bytes actually decompressed, never taken
from headers. Every refusal is a BundleInvalid naming the offending entry.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import pathlib
import re
import stat
import tarfile
import zipfile
import zlib
from typing import IO, Iterator

import yaml

from evaluator.errors import BundleInvalid, FrameworkUnsupported
from evaluator.sandbox.frameworks import FRAMEWORKS

MANIFEST_NAMES = ("evaluator.yaml", "evaluator.yml", "evaluator.json")
_CHUNK = 1024 * 1024
# NOTE: always fullmatch: `$` also matches before a trailing newline, so "name\n" passes re.match.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENTRY_POINT = re.compile(r"[^:\x00-\x1f\x7f]+\.py:[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class BundleLimits:
    """Caps applied while extracting; the ratio is uncompressed bytes over archive bytes."""

    max_files: int = 10_000
    max_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0
    ratio_grace_bytes: int = 16 * 1024 * 1024  # a tiny, very compressible bundle is fine
    max_manifest_bytes: int = 64 * 1024
    max_manifest_depth: int = 32  # mappings and lists inside one another


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated evaluator.yaml/.json; `root` is the folder it was found in."""

    name: str
    version: str
    framework: str
    model: str | None  # None: a code-only bundle whose predict needs no model file
    root: pathlib.Path
    predict: str | None = None
    classes: list | None = None

    def to_dict(self) -> dict:
        body = {"name": self.name, "version": self.version, "framework": self.framework}
        if self.model is not None:
            body["model"] = self.model
        if self.predict:
            body["predict"] = self.predict
        return body


# --- manifest -----------------------------------------------------------------------


_YAML_OPENERS = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
                 yaml.FlowSequenceStartToken)
_YAML_CLOSERS = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _too_deep(name: str, limit: int) -> BundleInvalid:
    return BundleInvalid(f"{name} is nested more than {limit} levels deep; a manifest is a flat mapping")


def _check_yaml_tokens(text: str, name: str, max_depth: int) -> None:
    """Refuse anchors, aliases and deep nesting before parsing (the scanner does not recurse; the parser does).

    The manifest needs neither anchors nor aliases, and they make alias bombs.
    """
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                raise BundleInvalid(f"{name}: YAML anchors and aliases are not allowed")
            depth += isinstance(token, _YAML_OPENERS) - isinstance(token, _YAML_CLOSERS)
            if depth > max_depth:
                raise _too_deep(name, max_depth)
    except yaml.YAMLError as ex:
        raise BundleInvalid(f"{name} is not valid YAML: {ex}") from None


def _check_json_depth(text: str, name: str, max_depth: int) -> None:
    """Refuse deep nesting before parsing: json.loads recurses once per level."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise _too_deep(name, max_depth)
        elif char in "]}":
            depth -= 1


def _parse_manifest(path: pathlib.Path, limits: BundleLimits) -> dict:
    with path.open("rb") as handle:
        raw = handle.read(limits.max_manifest_bytes + 1)
    if len(raw) > limits.max_manifest_bytes:
        raise BundleInvalid(f"{path.name} is larger than {limits.max_manifest_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleInvalid(f"{path.name} is not UTF-8") from None
    try:
        if path.suffix == ".json":
            _check_json_depth(text, path.name, limits.max_manifest_depth)
            try:
                document = json.loads(text)
            except ValueError as ex:
                raise BundleInvalid(f"{path.name} is not valid JSON: {ex}") from None
        else:
            _check_yaml_tokens(text, path.name, limits.max_manifest_depth)
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError as ex:
                raise BundleInvalid(f"{path.name} is not valid YAML: {ex}") from None
    except RecursionError:  # NOTE: a backstop; the depth checks above refuse such documents first
        raise _too_deep(path.name, limits.max_manifest_depth) from None
    if not isinstance(document, dict):
        raise BundleInvalid(f"{path.name} must be a mapping with name, version, framework and model")
    return document


def _inside(root: pathlib.Path, relative: str, what: str) -> pathlib.Path:
    parts = pathlib.PurePosixPath(relative).parts
    if _CONTROL.search(relative):
        raise BundleInvalid(f"manifest {what} {relative!r} must not contain control characters")
    if not relative or relative.startswith("/") or ".." in parts or "\\" in relative:
        raise BundleInvalid(f"manifest {what} {relative!r} must be a relative path inside the bundle")
    path = root.joinpath(*parts)
    if not path.exists() or path.is_symlink():
        raise BundleInvalid(f"manifest {what} {relative!r} does not exist in the bundle")
    return path


def find_manifest(directory: pathlib.Path) -> pathlib.Path:
    """Return the manifest path at the bundle root, or in its single top-level folder."""
    for base in (directory, *_single_child_dir(directory)):
        for name in MANIFEST_NAMES:
            if (base / name).is_file():
                return base / name
    raise BundleInvalid(f"no manifest: the bundle needs {' or '.join(MANIFEST_NAMES)} at its root")


def _single_child_dir(directory: pathlib.Path) -> list[pathlib.Path]:
    children = list(directory.iterdir())
    return children if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink() else []


def read_manifest(directory: pathlib.Path, limits: BundleLimits | None = None) -> Manifest:
    """Parse and validate the manifest of an extracted bundle."""
    limits = limits or BundleLimits()
    path = find_manifest(directory)
    document = _parse_manifest(path, limits)
    for key in ("name", "version", "framework"):
        if document.get(key) in (None, ""):
            raise BundleInvalid(f"{path.name}: '{key}' is required")
    if document.get("model") is None and not document.get("predict"):
        raise BundleInvalid(f"{path.name}: 'model' is required (the model file or folder), unless a 'predict' "
                            "entry point needs none")
    name, version = str(document["name"]), str(document["version"])
    if not _NAME.fullmatch(name):
        raise BundleInvalid(f"{path.name}: name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
    if not _NAME.fullmatch(version):
        raise BundleInvalid(f"{path.name}: version {version!r} must be 1-128 letters, digits, '.', '_' or '-'")
    framework = str(document["framework"])
    if framework not in FRAMEWORKS:
        raise FrameworkUnsupported(
            f"{path.name}: framework {framework!r} is not supported; use one of {', '.join(sorted(FRAMEWORKS))}"
        )
    root = path.parent
    model = None if document.get("model") is None else str(document["model"])
    if model is not None:
        if not model:
            raise BundleInvalid(f"{path.name}: 'model' must name a file or folder in the bundle (or be left out)")
        _inside(root, model, "model")
    predict = document.get("predict")
    if predict is not None:
        predict = str(predict)
        if not _ENTRY_POINT.fullmatch(predict):
            raise BundleInvalid(f"{path.name}: predict {predict!r} must look like 'predict.py:predict'")
        _inside(root, predict.split(":", 1)[0], "predict file")
    classes = document.get("classes")
    if classes is not None and not isinstance(classes, list):
        raise BundleInvalid(f"{path.name}: classes must be a list")
    return Manifest(name, version, framework, model, root, predict, classes)


# --- extraction ---------------------------------------------------------------------


class _Budget:
    """Count files and decompressed bytes against the limits while streaming."""

    def __init__(self, archive_bytes: int, limits: BundleLimits) -> None:
        self.archive_bytes = max(archive_bytes, 1)
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_file(self, entry: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise BundleInvalid(f"{entry}: the bundle has more than {self.limits.max_files} files")

    def add_bytes(self, count: int, entry: str) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_bytes:
            raise BundleInvalid(f"{entry}: the bundle unpacks to more than {self.limits.max_bytes} bytes")
        ratio = self.bytes / self.archive_bytes
        if self.bytes > self.limits.ratio_grace_bytes and ratio > self.limits.max_ratio:
            raise BundleInvalid(
                f"{entry}: compression ratio over {self.limits.max_ratio:g} (a decompression bomb?)"
            )


class _CountingReader(io.RawIOBase):
    """A stream of decompressed archive bytes that charges every read to the budget."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile, budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget
        self.entry = "archive"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._inner.read(len(buffer))
        self._budget.add_bytes(len(data), self.entry)
        buffer[: len(data)] = data
        return len(data)


def _safe_parts(name: str) -> tuple[str, ...]:
    if not name or name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name) or "\0" in name:
        raise BundleInvalid(f"{name!r}: absolute or malformed path in the bundle")
    parts = tuple(p for p in pathlib.PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise BundleInvalid(f"{name!r}: '..' in a bundle path")
    return parts


def _write(dest: pathlib.Path, parts: tuple[str, ...], chunks: Iterator[bytes], name: str) -> None:
    target = dest.joinpath(*parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if target.exists():
            raise BundleInvalid(f"{name!r}: duplicate entry in the bundle")
        with target.open("xb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        target.chmod(0o644)
    except OSError as ex:
        raise BundleInvalid(f"{name!r}: cannot be extracted ({ex.strerror})") from None


def _extract_tar(handle: IO[bytes], dest: pathlib.Path, budget: _Budget, compressed: bool) -> None:
    # Files are charged to `budget` as they are written (so a refusal names its entry); the
    # whole decompressed stream, headers included, is charged to a looser backstop budget,
    # because tarfile reads some things (pax headers) into memory before we see an entry.
    limits = budget.limits
    backstop = _Budget(budget.archive_bytes, dataclasses.replace(
        limits, max_bytes=limits.max_bytes + (1 << 20) + 1024 * limits.max_files,
        max_ratio=limits.max_ratio * 1.5, ratio_grace_bytes=limits.ratio_grace_bytes * 2 + (1 << 20)))
    reader = _CountingReader(gzip.GzipFile(fileobj=handle) if compressed else handle, backstop)
    buffered = io.BufferedReader(reader, buffer_size=_CHUNK)
    try:
        with tarfile.open(fileobj=buffered, mode="r|") as archive:
            for member in archive:
                reader.entry = member.name
                budget.add_file(member.name)
                parts = _safe_parts(member.name)
                if member.issym() or member.islnk():
                    raise BundleInvalid(f"{member.name!r}: links are not allowed in a bundle (-> {member.linkname!r})")
                if member.isdir():
                    if parts:
                        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True, mode=0o755)
                    continue
                if not member.isreg():
                    raise BundleInvalid(f"{member.name!r}: devices, fifos and special files are not allowed")
                if not parts:
                    raise BundleInvalid(f"{member.name!r}: a file without a name")
                source = archive.extractfile(member)
                assert source is not None  # a regular file always has its contents
                _write(dest, parts, _charged(source, budget, member.name), member.name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as ex:
        raise BundleInvalid(f"{reader.entry}: the archive is corrupt or truncated ({ex})") from None


def _charged(source: IO[bytes], budget: _Budget, entry: str) -> Iterator[bytes]:
    while chunk := source.read(_CHUNK):
        budget.add_bytes(len(chunk), entry)
        yield chunk


def _extract_zip(handle: IO[bytes], dest: pathlib.Path, budget: _Budget) -> None:
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError) as ex:
        raise BundleInvalid(f"archive: not a readable zip ({ex})") from None
    with archive:
        for info in archive.infolist():
            budget.add_file(info.filename)
            parts = _safe_parts(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BundleInvalid(f"{info.filename!r}: links are not allowed in a bundle")
            if info.is_dir():
                if parts:
                    dest.joinpath(*parts).mkdir(parents=True, exist_ok=True, mode=0o755)
                continue
            if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
                raise BundleInvalid(f"{info.filename!r}: devices, fifos and special files are not allowed")

            try:
                with archive.open(info) as source:
                    _write(dest, parts, _charged(source, budget, info.filename), info.filename)
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as ex:
                raise BundleInvalid(f"{info.filename!r}: cannot be decompressed ({ex})") from None


def archive_kind(path: pathlib.Path) -> str:
    """Return 'tar.gz', 'zip' or 'tar' from the file's magic bytes, whatever its name."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise BundleInvalid(f"{path.name}: not a .tar.gz or .zip archive")


def extract_bundle(archive: pathlib.Path, dest: pathlib.Path, limits: BundleLimits | None = None) -> Manifest:
    """Extract an untrusted bundle into an empty folder and return its validated manifest."""
    limits = limits or BundleLimits()
    kind = archive_kind(archive)
    dest.mkdir(parents=True, exist_ok=True, mode=0o755)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} must be empty")  # our bug, not the participant's
    budget = _Budget(archive.stat().st_size, limits)
    with archive.open("rb") as handle:
        if kind == "zip":
            _extract_zip(handle, dest, budget)
        else:
            _extract_tar(handle, dest, budget, compressed=(kind == "tar.gz"))
    for path in [dest, *dest.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return read_manifest(dest, limits)
