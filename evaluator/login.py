"""The CLI's saved login: an API URL and its token in a mode-600 file, so the token need not be exported.

The token is sent only to the URL it was saved for: pointing the CLI at another API
(`--api-url`, EVALUATOR_API_URL) never hands it the saved secret.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from evaluator.config import Config
from evaluator.errors import ConfigInvalid

_MAX_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Target:
    """Which API the CLI talks to, and with which token ("" when none)."""

    api_url: str
    token: str


def saved(config: Config) -> dict:
    """Return the saved {api_url, token}, or {} when there is none (or no file is configured)."""
    if not config.client_config_file:
        return {}
    path = Path(config.client_config_file)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as ex:
        raise ConfigInvalid(f"cannot read the saved login {path}: {ex.strerror}") from None
    try:
        document = json.loads(raw) if len(raw) <= _MAX_BYTES else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ConfigInvalid(f"the saved login {path} is not what `evaluator login` writes; run it again")
    return {key: str(document[key]) for key in ("api_url", "token") if isinstance(document.get(key), str)}


def target(config: Config, api_url: str | None = None, token: str | None = None) -> Target:
    """Resolve the API and token: flags, then EVALUATOR_API_URL / EVALUATOR_TOKEN, then the saved login."""
    login = saved(config)
    url = (api_url or config.api_url or login.get("api_url") or config.api_base_url).rstrip("/")
    secret = token or config.token
    if not secret and login.get("api_url", "").rstrip("/") == url:
        secret = login.get("token", "")
    return Target(url, secret)


def save(config: Config, api_url: str, token: str) -> Path:
    """Write the login atomically, readable by its owner only (folder 700, file 600)."""
    if not config.client_config_file:
        raise ConfigInvalid("EVALUATOR_CLIENT_CONFIG_FILE is empty: there is nowhere to save the login")
    path = Path(config.client_config_file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"api_url": api_url.rstrip("/"), "token": token}, out)
        out.write("\n")
    os.chmod(temporary, 0o600)  # NOTE: in case the umask or an older file widened it
    os.replace(temporary, path)
    return path


def forget(config: Config) -> bool:
    """Remove the saved login; True when there was one."""
    if not config.client_config_file:
        return False
    try:
        Path(config.client_config_file).unlink()
    except FileNotFoundError:
        return False
    return True
