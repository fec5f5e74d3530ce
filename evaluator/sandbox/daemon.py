"""Docker SDK errors turned into ours at the adapter, once: the core and the actor never see docker.errors.

The daemon refusing a request about our container or image (4xx) is the run's failure
(SandboxError); the daemon failing (5xx) or unreachable (connection, timeout) is
InfrastructureError, which the actor retries.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import docker.errors
import requests

from evaluator.errors import InfrastructureError, SandboxError

DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError)


class DockerGone(SandboxError):
    """Raised when the container or image a call named does not exist (Docker's 404)."""


@contextlib.contextmanager
def docker_errors(failed: str, *, refusal_fails_run: bool = False) -> Iterator[None]:
    """Translate the Docker SDK errors of a block; `failed` says what did not happen ("the container could not start").

    With `refusal_fails_run`, every answer of the daemon (5xx too: a start the runtime refuses)
    is SandboxError; otherwise only a 4xx is, and a 5xx is InfrastructureError. A 404 is DockerGone.
    """
    try:
        yield
    except docker.errors.APIError as ex:
        explanation = ex.explanation or ex
        if ex.status_code == 404:
            raise DockerGone(f"{failed}: {explanation}") from ex
        if refusal_fails_run or (ex.status_code is not None and ex.status_code < 500):
            raise SandboxError(f"{failed}: {explanation}") from ex
        raise InfrastructureError(f"Docker daemon error ({failed}): {explanation}") from ex
    except DOCKER_ERRORS as ex:
        raise InfrastructureError(f"Docker daemon unavailable ({failed}): {ex}") from ex
