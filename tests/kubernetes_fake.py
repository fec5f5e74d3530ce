"""An in-memory Kubernetes API with Job semantics, for the runner's contract tests.

No kube-apiserver installs on this machine (TECH-NOTES), so this stands in for the three API
groups the runner calls. It keeps what a real server keeps: a Job name is unique (a second
create is a 409), deleting a Job deletes its pods, each pod is labelled `job-name=<job>`, and
answers are the JSON the server sends. A "kubelet" thread plays each pod of a Job by running
the manifest's own fetch and return scripts (with this interpreter, against the real S3 server
through the presigned URLs) around a `predict` step the test supplies: so the URLs, the tar,
the status framing and the condition mapping are all exercised, only the container runtime is
pretended. Scenarios end a pod as a real cluster would: Complete, DeadlineExceeded, OOMKilled,
Evicted, an image that cannot be pulled, or a disruption after which the Job makes a new pod.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

from kubernetes.client.exceptions import ApiException

from evaluator.sandbox import kubernetes_manifests as manifests

_clock = itertools.count(1)


def _now() -> str:
    return f"2026-12-02T10:{next(_clock) % 60:02d}:00Z-{next(_clock):08d}"


@dataclasses.dataclass
class Pod:
    """What `predict` did: its exit code, its log, and what it left in /output."""

    exit_code: int = 0
    log: str = ""
    predictions: bytes | None = None
    oom: bool = False


Predict = Callable[[pathlib.Path, pathlib.Path], Pod]  # (model_dir, data_dir) -> outcome


class FakeCluster:
    """One namespace's Jobs, pods and NetworkPolicies; `scenario` decides how each Job's pods end."""

    def __init__(self, scenario: str = "complete", predict: Predict | None = None) -> None:
        self.scenario, self.predict = scenario, predict or (lambda model, data: Pod())
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.logs: dict[str, str] = {}
        self.policies: dict[str, dict] = {}
        self.creates: list[str] = []
        self.deleted: list[str] = []
        self.seen_inputs: list[dict] = []  # what fetch extracted, per pod: {path: bytes}
        self._lock = threading.Lock()
        self.batch, self.core, self.networking = _Batch(self), _Core(self), _Networking(self)

    # --- the server's side --------------------------------------------------------------

    def create_job(self, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        with self._lock:
            if name in self.jobs:
                raise ApiException(status=409, reason="AlreadyExists")
            job = copy.deepcopy(body)
            job["metadata"].update(namespace=namespace, creationTimestamp=_now())
            job["status"] = {"active": 1}
            self.jobs[name] = job
            self.creates.append(name)
        threading.Thread(target=self._play, args=(name,), daemon=True).start()
        return copy.deepcopy(job)

    def delete_job(self, name: str) -> None:
        with self._lock:
            if name not in self.jobs:
                raise ApiException(status=404, reason="NotFound")
            del self.jobs[name]
            for pod_name in [p for p, pod in self.pods.items() if pod["metadata"]["labels"]["job-name"] == name]:
                del self.pods[pod_name]
            self.deleted.append(name)

    def _new_pod(self, job_name: str) -> str:
        with self._lock:
            job = self.jobs.get(job_name)
            if job is None:
                return ""
            pod_name = f"{job_name}-{len(self.pods) + len(self.deleted)}x{next(_clock)}"
            labels = {**job["spec"]["template"]["metadata"]["labels"], "job-name": job_name}
            self.pods[pod_name] = {"metadata": {"name": pod_name, "labels": labels, "creationTimestamp": _now()},
                                   "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                                   "status": {"phase": "Pending"}}
            return pod_name

    def _set(self, job_name: str, pod_name: str, *, pod_status: dict | None = None, condition: dict | None = None,
             log: str | None = None) -> None:
        with self._lock:
            if pod_status is not None and pod_name in self.pods:
                self.pods[pod_name]["status"] = pod_status
            if log is not None:
                self.logs[pod_name] = log
            if condition is not None and job_name in self.jobs:
                self.jobs[job_name]["status"] = {"conditions": [{"status": "True", **condition}]}

    # --- the kubelet's side -------------------------------------------------------------

    def _play(self, job_name: str) -> None:
        try:
            self._play_pod(job_name)
        except Exception as ex:  # a script failed: the pod failed, as on a cluster (the test then sees why)
            self._set(job_name, "", condition={"type": "Failed", "reason": f"FakeKubeletError: {ex}"})

    def _play_pod(self, job_name: str) -> None:
        pod_name = self._new_pod(job_name)
        if self.scenario == "image_pull":
            self._set(job_name, pod_name, pod_status={"phase": "Pending", "initContainerStatuses": [
                {"name": "fetch", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})
            return
        if self.scenario == "disruption":  # drained before it ran: DisruptionTarget, the Job makes another pod
            self._set(job_name, pod_name, pod_status={"phase": "Failed", "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]})
            pod_name = self._new_pod(job_name)
        if self.scenario == "deadline":
            self._set(job_name, pod_name, pod_status={"phase": "Failed"},
                      condition={"type": "Failed", "reason": "DeadlineExceeded"}, log="thinking...\n")
            return
        if self.scenario == "hang":  # runs until deleted
            self._set(job_name, pod_name, pod_status={"phase": "Running"}, log="thinking...\n")
            return
        job = self.jobs.get(job_name)
        if job is None:
            return
        spec = job["spec"]["template"]["spec"]
        with tempfile.TemporaryDirectory() as scratch:
            root = pathlib.Path(scratch)
            dirs = {name: root / name for name in ("model", "data", "output")}
            for folder in dirs.values():
                folder.mkdir()
            fetch = spec["initContainers"][0]
            self._container(fetch, {"EVALUATOR_MODEL_DIR": str(dirs["model"]), "EVALUATOR_DATA_DIR": str(dirs["data"])})
            self.seen_inputs.append({str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()})
            outcome = self.predict(dirs["model"], dirs["data"])
            if self.scenario == "evicted":
                self._set(job_name, pod_name, pod_status={"phase": "Failed", "reason": "Evicted"},
                          condition={"type": "Failed", "reason": "PodFailurePolicy"}, log=outcome.log)
                return
            if outcome.oom:
                self._set(job_name, pod_name, pod_status={"phase": "Failed", "containerStatuses": [
                    {"name": manifests.PREDICT, "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]},
                    condition={"type": "Failed", "reason": "PodFailurePolicy"}, log=outcome.log)
                return
            if outcome.predictions is not None:
                (dirs["output"] / "predictions.parquet").write_bytes(outcome.predictions)
            (dirs["output"] / ".status").write_text(f"{outcome.exit_code}\n")
            returner = next(c for c in spec["containers"] if c["name"] == "return")
            self._container(returner, {"EVALUATOR_OUTPUT_DIR": str(dirs["output"])})
        self._set(job_name, pod_name, log=outcome.log, condition={"type": "Complete"}, pod_status={
            "phase": "Succeeded", "containerStatuses": [
                {"name": manifests.PREDICT, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]})

    @staticmethod
    def _container(container: dict, paths: dict[str, str]) -> None:
        """Run a fetch or return container's Python script with its own environment (and local paths)."""
        env = {**{e["name"]: e["value"] for e in container.get("env", [])}, **paths, "PATH": os.environ["PATH"]}
        script = container["command"][-1]
        subprocess.run([sys.executable, "-I", "-c", script], env=env, check=True, timeout=60)


class _Batch:
    def __init__(self, cluster: FakeCluster) -> None:
        self._c = cluster

    def create_namespaced_job(self, namespace: str, body: dict) -> dict:
        return self._c.create_job(namespace, body)

    def read_namespaced_job(self, name: str, namespace: str) -> dict:
        with self._c._lock:
            if name not in self._c.jobs:
                raise ApiException(status=404, reason="NotFound")
            return copy.deepcopy(self._c.jobs[name])

    def list_namespaced_job(self, namespace: str, label_selector: str = "") -> dict:
        with self._c._lock:
            return {"items": [copy.deepcopy(j) for j in self._c.jobs.values()
                              if _matches(j["metadata"]["labels"], label_selector)]}

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str = "") -> None:
        self._c.delete_job(name)


class _Core:
    def __init__(self, cluster: FakeCluster) -> None:
        self._c = cluster

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> dict:
        with self._c._lock:
            return {"items": [copy.deepcopy(p) for p in self._c.pods.values()
                              if _matches(p["metadata"]["labels"], label_selector)]}

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str = "", limit_bytes: int = 0) -> str:
        text = self._c.logs.get(name, "")
        return text.encode()[:limit_bytes].decode("utf-8", "replace") if limit_bytes else text


class _Networking:
    def __init__(self, cluster: FakeCluster) -> None:
        self._c = cluster

    def create_namespaced_network_policy(self, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        if name in self._c.policies:
            raise ApiException(status=409, reason="AlreadyExists")
        self._c.policies[name] = copy.deepcopy(body)
        return body

    def replace_namespaced_network_policy(self, name: str, namespace: str, body: dict) -> dict:
        self._c.policies[name] = copy.deepcopy(body)
        return body


def _matches(labels: dict, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
