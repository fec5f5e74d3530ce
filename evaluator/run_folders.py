"""Where a run's files live on the host: a folder whose name says nothing about the run.

The sandbox bind-mounts model/ and data/ from this folder, and Docker shows a bind
mount's host path inside the container (/proc/self/mountinfo, field 4). So the
name is an HMAC of the run id under a key kept in the work dir, which is never
mounted: it names no run, benchmark or participant, yet every attempt of a run on
this host finds the same folder (a takeover clears what a dead attempt left).
What stays visible is the work dir's own path; put it on a filesystem of its own
(a volume or tmpfs mounted there) and mountinfo shows only `/runs/<name>/...`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
from pathlib import Path

from evaluator.config import Config

KEY_FILE = ".run-folder-key"
RUN_ID_FILE = ".run-id"  # in the folder itself, never in the model/ or data/ that are mounted


def run_folder(config: Config, run_id: str) -> Path:
    """Return the host folder of a run under config.work_dir (not created)."""
    root = Path(config.work_dir)
    name = hmac.new(_key(root), run_id.encode(), hashlib.sha256).hexdigest()[:32]
    return root / "runs" / name


def prepare(config: Config, run_id: str) -> Path:
    """Return the run's folder, emptied, traversable by the sandbox user, and labelled with its run id."""
    folder = run_folder(config, run_id)
    shutil.rmtree(folder, ignore_errors=True)
    for path in (folder.parent.parent, folder.parent, folder):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)  # the sandbox user (65534) must reach model/ and data/
    (folder / RUN_ID_FILE).write_text(run_id)
    return folder


def run_id_of(folder: Path) -> str | None:
    """Return the run id a run folder was prepared for (a sweep's question), or None if unlabelled."""
    try:
        return (folder / RUN_ID_FILE).read_text()[:200] or None
    except (OSError, UnicodeDecodeError):
        return None


def _key(root: Path) -> bytes:
    """Return this work dir's folder-name key, creating it once (first writer wins, atomically)."""
    path = root / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    draft = root / f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
    finally:
        os.close(fd)
    try:
        os.link(draft, path)  # a complete file appears at once, or another process's already did
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_bytes()
