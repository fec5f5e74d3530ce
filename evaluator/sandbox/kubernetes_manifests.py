"""The Kubernetes objects of one sandbox run: a batch/v1 Job per attempt and the namespace's NetworkPolicy.

Pure functions over a SandboxSpec: no client, no I/O, so the manifests are validated offline
against the real schemas (tests/unit/test_kubernetes_manifests.py) and read in one place.

How data moves without labels ever entering the cluster: the worker packs /model and /data (the
bundle and the features, never the labels) into one tar, uploads it to the store and hands the
pod two presigned URLs. The `fetch` init container GETs the tar into two emptyDirs; `predict`
(the framework image's program, the same lock-down as the Docker sandbox) sees them read-only and
writes /output; `return` waits for predict's status file and PUTs "<status>\\n<predictions>" to
the second URL: the same framing the Docker sandbox reads from stdout. The URLs live only in the
fetch and return containers' environment; predict gets neither (containers of a pod do not share
a process namespace here), and no container gets a service-account token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

from evaluator.sandbox.spec import SandboxSpec

RUN_LABEL = "evaluator.dev/run-id"
ATTEMPT_LABEL = "evaluator.dev/attempt"
DEPLOYMENT_LABEL = "evaluator.dev/deployment"
WORKER_LABEL = "evaluator.dev/worker"
SANDBOX_LABEL = "evaluator.dev/sandbox"
PREDICT = "predict"  # the container whose exit and OOM decide the run
SANDBOX_UID = 65534
# Seconds the fetch and return steps may take on top of the model's own limit.
TRANSFER_ALLOWANCE_S = 120
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")

# Run by the framework image's Python (stdlib only). Reads at most EVALUATOR_INPUTS_MAX_BYTES and
# extracts regular files and folders only: the tar is the worker's own, but the URL could be stale.
FETCH_SCRIPT = r"""
import io, os, sys, tarfile, urllib.request
limit = int(os.environ["EVALUATOR_INPUTS_MAX_BYTES"])
with urllib.request.urlopen(os.environ["EVALUATOR_INPUTS_URL"], timeout=60) as response:
    data = response.read(limit + 1)
if len(data) > limit:
    sys.exit("the inputs are larger than their limit")
roots = {"model": os.environ.get("EVALUATOR_MODEL_DIR", "/model"),
         "data": os.environ.get("EVALUATOR_DATA_DIR", "/data")}
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    for member in archive.getmembers():
        top, _, rest = member.name.partition("/")
        if top not in roots or not (member.isfile() or member.isdir()) or ".." in member.name.split("/"):
            continue
        target = os.path.join(roots[top], rest)
        if member.isdir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.extractfile(member) as source, open(target, "wb") as sink:
            sink.write(source.read())
"""

# Waits for predict's status file, then PUTs the status line and at most the output cap of predictions.
RETURN_SCRIPT = r"""
import os, time, urllib.request
output = os.environ.get("EVALUATOR_OUTPUT_DIR", "/output")
status_path = os.path.join(output, ".status")
while not os.path.exists(status_path):
    time.sleep(0.2)
time.sleep(0.2)  # the status is written last; let the write finish
with open(status_path, "rb") as handle:
    status = handle.read(16).strip() or b"255"
body = status + b"\n"
predictions = os.path.join(output, "predictions.parquet")
if os.path.isfile(predictions) and not os.path.islink(predictions):
    with open(predictions, "rb") as handle:
        body += handle.read(int(os.environ["EVALUATOR_OUTPUT_MAX_BYTES"]))
request = urllib.request.Request(os.environ["EVALUATOR_RESULT_URL"], data=body, method="PUT")
with urllib.request.urlopen(request, timeout=60) as response:
    response.read()
"""

# predict's command: the image's program, its streams as the container log, then the status file.
PREDICT_SCRIPT = ("/opt/venv/bin/python -I /opt/evaluator/evaluator_predict.py 1>&2; "
                  "printf '%s\\n' \"$?\" > /output/.status")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where and how a deployment's sandbox Jobs run: chosen by config, the same for every run."""

    namespace: str = "evaluator-sandboxes"
    deployment: str = "default"
    worker: str = ""
    runtime_class: str = ""  # e.g. "gvisor"; empty: the cluster's default runtime
    ttl_after_finished_s: int = 300
    store_cidr: str = ""  # the only address sandboxes may reach (fetch and return); empty: nowhere
    store_port: int = 0


def label_value(value: str) -> str:
    """Return a valid label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE.sub("-", value)[:63].strip("-_.")
    return cleaned or "none"


def job_name(run_id: str, attempt: int) -> str:
    """Name the Job of one attempt of one run: the same name twice is a 409, so a create is idempotent."""
    base = re.sub(r"[^a-z0-9-]", "-", str(run_id).lower()).strip("-")
    digest = hashlib.sha256(str(run_id).encode()).hexdigest()[:8]
    name = f"ev-{base[:40]}-{digest}-a{int(attempt)}"
    return name[:63].rstrip("-")


def labels(spec: SandboxSpec, attempt: int, placement: Placement) -> dict[str, str]:
    return {SANDBOX_LABEL: "true", RUN_LABEL: label_value(spec.run_id), ATTEMPT_LABEL: str(int(attempt)),
            DEPLOYMENT_LABEL: label_value(placement.deployment), WORKER_LABEL: label_value(placement.worker)}


def _locked_down() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
            "runAsNonRoot": True, "runAsUser": SANDBOX_UID, "runAsGroup": SANDBOX_UID,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _mebibytes(count: int) -> str:
    return f"{max(1, math.ceil(count / (1024 * 1024)))}Mi"


def _memory_quantity(memory: str) -> str:
    """Docker's "2g"/"512m" as a Kubernetes quantity ("2Gi"/"512Mi")."""
    text = memory.strip().lower()
    units = {"k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}
    if text and text[-1] in units:
        return f"{text[:-1]}{units[text[-1]]}"
    if text.endswith("b") and text[-2:-1] in units:
        return f"{text[:-2]}{units[text[-2]]}"
    return text


def job_manifest(spec: SandboxSpec, attempt: int, placement: Placement, *, inputs_url: str, result_url: str,
                 inputs_bytes: int) -> dict:
    """Return the batch/v1 Job of one attempt: one pod, never retried but for disruptions, deadline-bound."""
    limits = spec.limits
    own_labels = labels(spec, attempt, placement)
    threads = str(limits.threads)
    memory = _memory_quantity(limits.memory)
    resources: dict = {"cpu": f"{int(limits.cpus * 1000)}m", "memory": memory}
    if limits.gpus:
        resources["nvidia.com/gpu"] = str(limits.gpus)
    small = {"cpu": "250m", "memory": "256Mi"}
    env = [{"name": name, "value": value} for name, value in {
        "EVALUATOR_ROW_ID_COLUMN": "row_id", "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1",
        **spec.env}.items()]
    mounts = {"model": "/model", "data": "/data", "output": "/output", "tmp": "/tmp", "shm": "/dev/shm"}

    def mount(*names: str, read_only: tuple[str, ...] = ()) -> list[dict]:
        return [{"name": n, "mountPath": mounts[n], "readOnly": n in read_only} for n in names]

    pod_spec: dict = {
        "restartPolicy": "Never",  # required by podFailurePolicy; one pod per attempt
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no other service's address in the model's environment
        "hostname": "sandbox",
        "shareProcessNamespace": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {"runAsNonRoot": True, "runAsUser": SANDBOX_UID, "runAsGroup": SANDBOX_UID,
                            "fsGroup": SANDBOX_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{
            "name": "fetch", "image": spec.image, "command": ["/opt/venv/bin/python", "-I", "-c", FETCH_SCRIPT],
            "env": [{"name": "EVALUATOR_INPUTS_URL", "value": inputs_url},
                    {"name": "EVALUATOR_INPUTS_MAX_BYTES", "value": str(inputs_bytes)}],
            "securityContext": _locked_down(), "resources": {"limits": small, "requests": small},
            "volumeMounts": mount("model", "data", "tmp")}],
        "containers": [
            {"name": PREDICT, "image": spec.image, "command": ["/bin/sh", "-c", PREDICT_SCRIPT], "env": env,
             "workingDir": "/tmp", "securityContext": _locked_down(),
             "resources": {"limits": resources, "requests": dict(resources)},
             "volumeMounts": mount("model", "data", "output", "tmp", "shm", read_only=("model", "data"))},
            {"name": "return", "image": spec.image, "command": ["/opt/venv/bin/python", "-I", "-c", RETURN_SCRIPT],
             "env": [{"name": "EVALUATOR_RESULT_URL", "value": result_url},
                     {"name": "EVALUATOR_OUTPUT_MAX_BYTES", "value": str(limits.output_bytes)}],
             "securityContext": _locked_down(), "resources": {"limits": small, "requests": small},
             "volumeMounts": mount("output", read_only=("output",))},
        ],
        "volumes": [
            {"name": "model", "emptyDir": {"sizeLimit": _mebibytes(inputs_bytes)}},
            {"name": "data", "emptyDir": {"sizeLimit": _mebibytes(inputs_bytes)}},
            # Memory-backed and capped, as the Docker sandbox's tmpfs: the kubelet evicts past the limit.
            {"name": "output", "emptyDir": {"medium": "Memory", "sizeLimit": _mebibytes(limits.output_bytes)}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": _mebibytes(limits.tmp_bytes)}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _mebibytes(limits.shm_bytes)}},
        ],
    }
    if placement.runtime_class:
        pod_spec["runtimeClassName"] = placement.runtime_class
    if limits.gpus:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec.run_id, attempt), "namespace": placement.namespace,
                     "labels": own_labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(math.ceil(limits.timeout_s)) + TRANSFER_ALLOWANCE_S,
            "ttlSecondsAfterFinished": placement.ttl_after_finished_s,
            "podFailurePolicy": {"rules": [
                # A node drain or preemption is not the model's fault: the Job makes a new pod.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": PREDICT, "operator": "NotIn", "values": [0]}},
            ]},
            "template": {"metadata": {"labels": own_labels}, "spec": pod_spec},
        },
    }


def network_policy(placement: Placement) -> dict:
    """Deny every ingress and egress of sandbox pods, except TCP to the object store when one is set.

    The exception serves fetch and return; predict shares the pod's network namespace, so it can
    reach that one address too, but holds no URL and no credential for it (see the module doc).
    """
    egress = []
    if placement.store_cidr:
        rule: dict = {"to": [{"ipBlock": {"cidr": placement.store_cidr}}]}
        if placement.store_port:
            rule["ports"] = [{"protocol": "TCP", "port": placement.store_port}]
        egress.append(rule)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"evaluator-sandboxes-{label_value(placement.deployment)}"[:63],
                     "namespace": placement.namespace},
        "spec": {"podSelector": {"matchLabels": {SANDBOX_LABEL: "true",
                                                 DEPLOYMENT_LABEL: label_value(placement.deployment)}},
                 "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": egress},
    }
