"""The sandbox's Kubernetes objects, validated offline against the real schemas, and their lock-down."""

from __future__ import annotations

import pathlib

import docker.types
import kubernetes_validate
import pytest

from evaluator.config import Config
from evaluator.sandbox import kubernetes_manifests as manifests
from evaluator.sandbox.lockdown import container_options
from evaluator.sandbox.spec import Limits, SandboxSpec
from evaluator.settings import BenchmarkLimits

KUBERNETES_VERSIONS = ("1.31", kubernetes_validate.latest_version())  # podFailurePolicy is GA from 1.31


def spec(limits: Limits | None = None, run_id: str = "3f2a9c1e-7b4d-4e8a-9f00-aa11bb22cc33") -> SandboxSpec:
    return SandboxSpec(image="registry.example/evaluator-sklearn:abc123", model_dir=pathlib.Path("/x/model"),
                       data_dir=pathlib.Path("/x/data"), limits=limits or Limits(), run_id=run_id,
                       env={"EVALUATOR_ROW_ID_COLUMN": "id"})


def job(limits: Limits | None = None, placement: manifests.Placement | None = None, attempt: int = 1) -> dict:
    return manifests.job_manifest(spec(limits), attempt, placement or manifests.Placement(),
                                  inputs_url="https://store.example/in?X-Amz-Signature=s1",
                                  result_url="https://store.example/out?X-Amz-Signature=s2", inputs_bytes=5_000_000)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", ["plain", "gpu_gvisor"])
def test_the_job_and_the_network_policy_validate_against_the_kubernetes_schemas(version, variant):
    placement = manifests.Placement(runtime_class="gvisor" if variant != "plain" else "", store_cidr="10.0.0.5/32",
                                    store_port=9000)
    limits = Limits(gpus=2) if variant != "plain" else Limits()

    kubernetes_validate.validate(job(limits, placement), version, strict=True)
    kubernetes_validate.validate(manifests.network_policy(placement), version, strict=True)


def test_a_broken_manifest_is_refused_by_the_validator():  # the check above can fail
    broken = job()
    broken["spec"]["backoffLimit"] = "zero"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_pod_is_locked_down_like_the_docker_sandbox():
    manifest = job(Limits(timeout_s=600, memory="2g", cpus=1.5))
    pod = manifest["spec"]["template"]["spec"]

    assert manifest["spec"]["backoffLimit"] == 0 and manifest["spec"]["activeDeadlineSeconds"] == 600 + 120
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 300
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsUser"] == 65534
        assert context["runAsNonRoot"] is True
    predict = next(c for c in pod["containers"] if c["name"] == manifests.PREDICT)
    assert predict["resources"]["limits"] == {"cpu": "1500m", "memory": "2Gi"} == predict["resources"]["requests"]
    assert {m["mountPath"]: m["readOnly"] for m in predict["volumeMounts"]} == {
        "/model": True, "/data": True, "/output": False, "/tmp": False, "/dev/shm": False}
    volumes = {v["name"]: v["emptyDir"] for v in pod["volumes"]}
    assert volumes["output"] == {"medium": "Memory", "sizeLimit": "256Mi"}


def test_the_presigned_urls_reach_only_the_fetch_and_return_containers():
    pod = job()["spec"]["template"]["spec"]
    predict = next(c for c in pod["containers"] if c["name"] == manifests.PREDICT)

    assert "X-Amz-Signature" not in str(predict)
    assert "s1" in str(pod["initContainers"][0]["env"]) and "s2" in str(pod["containers"][1]["env"])
    assert pod["shareProcessNamespace"] is False  # so predict cannot read the others' environment


def test_job_names_are_stable_per_attempt_unique_across_attempts_and_valid():
    long_run = "A_very/long run id " * 10
    names = {manifests.job_name(run, attempt) for run in ("r1", "r2", long_run) for attempt in (1, 2)}

    assert len(names) == 6 and manifests.job_name("r1", 1) == manifests.job_name("r1", 1)
    assert all(len(n) <= 63 and n[0].isalnum() and n[-1].isalnum() and n == n.lower() for n in names)
    assert all(len(manifests.label_value(v)) <= 63 for v in (long_run, "-x-", ""))


def test_the_network_policy_denies_everything_but_the_store():
    closed = manifests.network_policy(manifests.Placement())
    open_to_store = manifests.network_policy(manifests.Placement(store_cidr="10.1.2.3/32", store_port=8333))

    assert closed["spec"]["ingress"] == [] and closed["spec"]["egress"] == []
    assert open_to_store["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
                                                "ports": [{"protocol": "TCP", "port": 8333}]}]


def test_gpus_become_a_docker_device_request_and_a_kubernetes_resource():
    limits = Limits.from_config(Config(), BenchmarkLimits.from_json({"gpus": 1}))

    options = container_options(limits, env={}, labels={}, volumes={})
    (request,) = options["device_requests"]
    assert isinstance(request, docker.types.DeviceRequest) and request["Count"] == 1
    assert request["Capabilities"] == [["gpu"]]
    predict = job(limits)["spec"]["template"]["spec"]["containers"][0]
    assert predict["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container_options(Limits(), env={}, labels={}, volumes={})["device_requests"] is None
    assert "nvidia.com/gpu" not in str(job(Limits()))
