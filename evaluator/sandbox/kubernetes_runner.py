"""KubernetesSandbox: the Docker sandbox's interface over one batch/v1 Job per run attempt.

Chosen by EVALUATOR_SANDBOX_BACKEND=kubernetes (worker/services.py). The manifests are in
kubernetes_manifests.py; this module only talks to the API server (the official `kubernetes`
client), to the object store for the two exchanged objects, and maps what the Job and its pod
report to our codes: DeadlineExceeded -> timeout, OOMKilled -> out_of_memory, Evicted -> the
output cap, an image that cannot be pulled -> sandbox_error; an unreachable API server is an
InfrastructureError (the actor retries the run). Every API error is translated here, once.
"""

from __future__ import annotations

import io
import logging
import pathlib
import tarfile
import time
from typing import Any, Callable, Iterator

from evaluator.errors import InfrastructureError, OutOfMemory, RunCancelled, SandboxError, SandboxTimeout
from evaluator.sandbox import kubernetes_manifests as manifests
from evaluator.sandbox.runner import SandboxContainer
from evaluator.sandbox.spec import SandboxResult, SandboxSpec
from evaluator.sandbox.streams import split_status
from evaluator.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

POLL_S = 0.5
EXCHANGE_PREFIX = "exchange/"  # transient: an attempt's inputs tar and its returned output, deleted after it
_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def exchange_keys(run_id: str, attempt: int) -> tuple[str, str]:
    prefix = f"{EXCHANGE_PREFIX}{run_id}/{int(attempt)}/"
    return prefix + "inputs.tar", prefix + "output"


def _translate(ex: BaseException, doing: str) -> Exception:
    """An API error as ours: 5xx, 429 and no answer are infrastructure; the rest refuse the run."""
    status = getattr(ex, "status", None)
    if status is None or status in (0, 429) or status >= 500:
        return InfrastructureError(f"the Kubernetes API did not answer while {doing}: {ex}")
    reason = getattr(ex, "reason", "") or str(ex)
    return SandboxError(f"Kubernetes refused {doing}: {status} {reason}")


class KubernetesSandbox:
    """Run a SandboxSpec as a Job; the same contract as DockerSandbox (run, kill_run, sweeps)."""

    def __init__(self, batch: Any, core: Any, blobs: BlobStore, *, bucket: str,
                 placement: manifests.Placement, networking: Any = None, url_expiry_s: int = 3600) -> None:
        self._batch, self._core, self._networking = batch, core, networking
        self._blobs, self._bucket, self._placement = blobs, bucket, placement
        self._url_expiry_s = url_expiry_s

    @classmethod
    def from_kubeconfig(cls, blobs: BlobStore, *, bucket: str, placement: manifests.Placement,
                        kubeconfig: str = "") -> KubernetesSandbox:
        """Load a kubeconfig file (or the in-cluster service account when none is given)."""
        from kubernetes import client, config

        try:
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig)
            else:
                config.load_incluster_config()
        except Exception as ex:  # noqa: BLE001 - the loader raises several unrelated types
            raise InfrastructureError(f"no Kubernetes configuration could be loaded: {ex}") from ex
        return cls(client.BatchV1Api(), client.CoreV1Api(), blobs, bucket=bucket, placement=placement,
                   networking=client.NetworkingV1Api())

    # --- the sandbox interface ----------------------------------------------------------

    def ensure_network_policy(self) -> None:
        """Create or replace the deny-all policy of this deployment's sandbox pods (worker boot)."""
        if self._networking is None:
            return
        policy = manifests.network_policy(self._placement)
        name = policy["metadata"]["name"]
        with self._api("creating the sandboxes' NetworkPolicy", conflict_ok=True) as outcome:
            self._networking.create_namespaced_network_policy(self._placement.namespace, policy)
        if outcome.conflict:
            with self._api("replacing the sandboxes' NetworkPolicy"):
                self._networking.replace_namespaced_network_policy(name, self._placement.namespace, policy)

    def run(self, spec: SandboxSpec, *, should_cancel: Callable[[], bool] | None = None) -> SandboxResult:
        """Upload the inputs, create (or adopt) the attempt's Job, wait for it, read the returned output.

        Raises:
            SandboxTimeout, OutOfMemory, RunCancelled, SandboxError: the run failed (with `.log`).
            InfrastructureError: the API server or the store could not be reached (retry later).
        """
        started = time.monotonic()
        inputs_key, output_key = exchange_keys(spec.run_id, spec.attempt)
        inputs = _pack(spec.model_dir, spec.data_dir)
        self._blobs.put_bytes(self._bucket, inputs_key, inputs, "application/x-tar")
        result_url, _ = self._blobs.presign_put(self._bucket, output_key, self._url_expiry_s)
        job = manifests.job_manifest(
            spec, spec.attempt, self._placement,
            inputs_url=self._blobs.presign_get(self._bucket, inputs_key, self._url_expiry_s),
            result_url=result_url, inputs_bytes=len(inputs))
        name = job["metadata"]["name"]
        try:
            with self._api(f"creating Job {name}", conflict_ok=True) as outcome:
                self._batch.create_namespaced_job(self._placement.namespace, job)
            if outcome.conflict:  # this attempt's Job exists already (a retried create): adopt it
                logger.info("Job %s exists already; waiting for it", name)
            state = self._wait(name, spec, started, should_cancel)
            log = self._log(state["pod"], spec)
            return self._result(state, spec, output_key, log, started)
        finally:
            self._delete_job(name)
            for key in (inputs_key, output_key):
                self._forget(key)

    def kill_run(self, run_id: str) -> int:
        """Delete every Job of a run (its pods go with it); return how many."""
        jobs = list(self._jobs(f"{manifests.RUN_LABEL}={manifests.label_value(run_id)}"))
        for job in jobs:
            self._delete_job(job["metadata"]["name"])
        return len(jobs)

    def remove_leftovers(self, run_id: str | None = None) -> int:
        """Delete one run's Jobs (any state), or every finished Job of this deployment; return how many."""
        if run_id:
            return self.kill_run(run_id)
        finished = [job for job in self._jobs(self._deployment_selector()) if _finished(job) is not None]
        for job in finished:
            self._delete_job(job["metadata"]["name"])
        return len(finished)

    def containers(self) -> list[SandboxContainer]:
        """This deployment's Jobs as the sweeps see containers (id = Job name)."""
        found = []
        for job in self._jobs(self._deployment_selector()):
            labels = job["metadata"].get("labels") or {}
            condition = _finished(job)
            found.append(SandboxContainer(id=job["metadata"]["name"], run_id=labels.get(manifests.RUN_LABEL, ""),
                                          worker=labels.get(manifests.WORKER_LABEL, ""),
                                          status="exited" if condition else "running"))
        return found

    def remove_container(self, container_id: str) -> None:
        self._delete_job(container_id)

    # --- steps ----------------------------------------------------------------------------

    def _wait(self, name: str, spec: SandboxSpec, started: float,
              should_cancel: Callable[[], bool] | None) -> dict:
        """Poll the Job until it finishes; the pod's own state decides pull failures and cancellation."""
        deadline = started + spec.limits.timeout_s + manifests.TRANSFER_ALLOWANCE_S + 30
        while True:
            with self._api(f"reading Job {name}"):
                job = _plain(self._batch.read_namespaced_job(name, self._placement.namespace))
            condition = _finished(job)
            if condition is not None:
                return {"job": job, "condition": condition, "pod": self._pod(name)}
            pod = self._pod(name)
            waiting = _waiting_reason(pod)
            if waiting in _PULL_FAILURES:
                raise SandboxError(f"the cluster cannot pull the image {spec.image} ({waiting}); push it to a "
                                   "registry the nodes can reach, or set EVALUATOR_IMAGE_PREFIX")
            if should_cancel is not None and should_cancel():
                raise RunCancelled("the run was cancelled; its Job was deleted")
            if time.monotonic() > deadline:  # the API server should have ended it: it did not
                raise SandboxTimeout(f"the model ran past its {spec.limits.timeout_s:g}s limit; its Job was deleted")
            time.sleep(POLL_S)

    def _result(self, state: dict, spec: SandboxSpec, output_key: str, log: bytes, started: float) -> SandboxResult:
        condition, pod = state["condition"], state["pod"]
        terminated = _terminated(pod, manifests.PREDICT)
        if condition.get("type") == "Failed":
            reason = condition.get("reason", "")
            if terminated.get("reason") == "OOMKilled":
                raise OutOfMemory(f"the model used more than {spec.limits.memory} of memory and was killed", log=log)
            if reason == "DeadlineExceeded":
                raise SandboxTimeout(f"the model ran past its {spec.limits.timeout_s:g}s limit; the Job was stopped",
                                     log=log)
            if (pod.get("status") or {}).get("reason") == "Evicted":
                raise SandboxError(f"the sandbox wrote more than its limits allow ({spec.limits.output_bytes} bytes "
                                   "of output) and was evicted", log=log)
            raise SandboxError(f"the sandbox Job failed ({reason or 'no reason given'}) before its program "
                               "reported a status", log=log)
        head = self._blobs.head(self._bucket, output_key)
        if head is None:
            raise SandboxError("the sandbox finished without returning a status", log=log)
        if head["size"] > spec.limits.output_bytes + 16:
            raise SandboxError(f"the sandbox wrote more than {spec.limits.output_bytes} bytes of predictions", log=log)
        status, predictions = split_status(self._blobs.get_bytes(self._bucket, output_key))
        if status is None:
            raise SandboxError("the sandbox returned no status line", log=log)
        return SandboxResult(exit_code=status, predictions=predictions, log=log, image_id=spec.image,
                             duration_s=round(time.monotonic() - started, 3))

    def _log(self, pod: dict, spec: SandboxSpec) -> bytes:
        """The first log_bytes of predict's log (the API server caps it; we never read more)."""
        if not pod:
            return b""
        try:
            with self._api("reading the sandbox log"):
                text = self._core.read_namespaced_pod_log(pod["metadata"]["name"], self._placement.namespace,
                                                          container=manifests.PREDICT,
                                                          limit_bytes=spec.limits.log_bytes)
        except (SandboxError, InfrastructureError) as ex:
            logger.warning("%s", ex)
            return b""
        data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text or b"")
        return data[:spec.limits.log_bytes]

    def _pod(self, name: str) -> dict:
        """The newest pod of a Job ({} when none yet): a disruption makes a second one."""
        with self._api(f"listing the pods of Job {name}"):
            found = _plain(self._core.list_namespaced_pod(self._placement.namespace,
                                                          label_selector=f"job-name={name}"))
        pods = found.get("items") or []
        return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", default={})

    def _jobs(self, selector: str) -> Iterator[dict]:
        with self._api("listing sandbox Jobs"):
            found = _plain(self._batch.list_namespaced_job(self._placement.namespace, label_selector=selector))
        yield from found.get("items") or []

    def _deployment_selector(self) -> str:
        return (f"{manifests.SANDBOX_LABEL}=true,"
                f"{manifests.DEPLOYMENT_LABEL}={manifests.label_value(self._placement.deployment)}")

    def _delete_job(self, name: str) -> None:
        try:
            with self._api(f"deleting Job {name}", missing_ok=True):
                self._batch.delete_namespaced_job(name, self._placement.namespace, propagation_policy="Background")
        except (SandboxError, InfrastructureError) as ex:  # its ttlSecondsAfterFinished removes it later
            logger.warning("%s", ex)

    def _forget(self, key: str) -> None:
        try:
            self._blobs.delete(self._bucket, key)
        except Exception as ex:  # noqa: BLE001 - cleanup only: the store's lifecycle rule is the backstop
            logger.warning("exchange object %s was not deleted: %s", key, ex)

    def _api(self, doing: str, *, conflict_ok: bool = False, missing_ok: bool = False) -> _ApiCall:
        return _ApiCall(doing, conflict_ok=conflict_ok, missing_ok=missing_ok)


class _ApiCall:
    """Translate the client's exceptions for one call; `.conflict` says a create met an existing object."""

    def __init__(self, doing: str, *, conflict_ok: bool, missing_ok: bool) -> None:
        self.doing, self.conflict_ok, self.missing_ok, self.conflict = doing, conflict_ok, missing_ok, False

    def __enter__(self) -> _ApiCall:
        return self

    def __exit__(self, kind: type | None, ex: BaseException | None, tb: object) -> bool:
        if ex is None or isinstance(ex, (SandboxError, InfrastructureError, RunCancelled, SandboxTimeout)):
            return False
        status = getattr(ex, "status", None)
        if status == 409 and self.conflict_ok:
            self.conflict = True
            return True
        if status == 404 and self.missing_ok:
            return True
        if not _is_api_error(ex):
            return False
        raise _translate(ex, self.doing) from ex


def _is_api_error(ex: BaseException) -> bool:
    """The client's ApiException, or a connection failure of urllib3 underneath it."""
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # pragma: no cover - the extra is not installed
        ApiException = ()  # type: ignore[assignment,misc]  # noqa: N806
    import urllib3.exceptions

    return isinstance(ex, (ApiException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def _plain(value: Any) -> dict:
    """An API answer as the JSON the server sent (camelCase keys), whether a model object or a dict."""
    if isinstance(value, dict):
        return value
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(value)


def _finished(job: dict) -> dict | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition
    return None


def _container_status(pod: dict, name: str) -> dict:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == name), {})


def _terminated(pod: dict, name: str) -> dict:
    return (_container_status(pod, name).get("state") or {}).get("terminated") or {}


def _waiting_reason(pod: dict) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
    for status in statuses:
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            return str(reason)
    return ""


def _pack(model_dir: pathlib.Path, data_dir: pathlib.Path) -> bytes:
    """One tar of model/ and data/ (regular files and folders: what the worker staged, no links)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for top, root in (("model", model_dir), ("data", data_dir)):
            for path in sorted(pathlib.Path(root).rglob("*")):
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    continue
                archive.add(path, arcname=f"{top}/{path.relative_to(root)}", recursive=False)
    return buffer.getvalue()
