"""The Kubernetes Job runner against an in-memory API with Job semantics and the real S3 server.

The fake (tests/kubernetes_fake.py) runs each pod's real fetch and return scripts through the
presigned URLs; only the model's container is played by the test. Evaluations go through
evaluate_bundle, so the codes are the ones a participant sees.
"""

from __future__ import annotations

import io
import threading
import time
import uuid

import joblib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from evaluator.errors import InfrastructureError
from evaluator.evaluation import evaluate_bundle
from evaluator.sandbox import kubernetes_manifests as manifests
from evaluator.sandbox.kubernetes_runner import KubernetesSandbox, _pack, exchange_keys
from evaluator.sandbox.spec import Limits, SandboxSpec
from evaluator.settings import Scoring
from tests.integration import sandbox_fixtures as fx
from tests.kubernetes_fake import FakeCluster, Pod

pytestmark = pytest.mark.integration


@pytest.fixture
def data(tmp_path):
    return fx.classification_data(tmp_path / "data")


@pytest.fixture
def bundle(tmp_path, data):
    x, y, _, _ = data
    return fx.sklearn_bundle(tmp_path / "good.tar.gz", LogisticRegression(max_iter=300).fit(x, y))


def model_predict(model_dir, data_dir) -> Pod:
    """What the sklearn image's program does: load the model, predict every row, write Parquet."""
    model = joblib.load(model_dir / "model.joblib")
    features = pq.read_table(data_dir / "features.parquet").to_pandas()
    predictions = model.predict(features[[f"f{j}" for j in range(4)]].to_numpy())
    sink = io.BytesIO()
    pq.write_table(pa.table({"row_id": features["row_id"], "prediction": predictions}), sink)
    return Pod(log="predicted 120 rows\n", predictions=sink.getvalue())


def make_sandbox(cluster: FakeCluster, blobs, config, deployment: str = "") -> KubernetesSandbox:
    placement = manifests.Placement(namespace="sandboxes", deployment=deployment or f"d-{uuid.uuid4().hex[:6]}",
                                    worker="w1")
    return KubernetesSandbox(cluster.batch, cluster.core, blobs, bucket=config.results_bucket, placement=placement,
                             networking=cluster.networking)


def evaluate(sandbox, bundle, data, config, tmp_path, **kwargs):
    _, _, features, labels = data
    run_id = f"k8s-{uuid.uuid4().hex[:8]}"
    return run_id, evaluate_bundle(bundle, features, labels, scoring=Scoring("classification"), sandbox=sandbox,
                                   config=config.replace(sandbox_timeout_s=20), work_dir=tmp_path / run_id,
                                   run_id=run_id, attempt=3, **kwargs)


def test_a_run_as_a_job_scores_its_predictions_and_labels_never_enter_the_cluster(blobs, config, data, bundle,
                                                                                  tmp_path):
    cluster = FakeCluster(predict=model_predict)
    run_id, evaluation = evaluate(make_sandbox(cluster, blobs, config), bundle, data, config, tmp_path)

    assert evaluation.succeeded, evaluation.failure
    assert evaluation.metrics["metrics"]["accuracy"] > 0.8
    assert b"predicted 120 rows" in evaluation.log
    # One Job, named from the run and its attempt, deleted afterwards with the exchanged objects.
    assert cluster.creates == [manifests.job_name(run_id, 3)] and cluster.jobs == {}
    assert all(blobs.head(config.results_bucket, key) is None for key in exchange_keys(run_id, 3))
    # What the pod fetched: the bundle's files and the features without the target column, nothing else.
    fetched = cluster.seen_inputs[0]
    assert set(fetched) == {"model/evaluator.yaml", "model/model.joblib", "data/features.parquet"}
    staged = pq.read_table(io.BytesIO(fetched["data/features.parquet"]))
    assert "target" not in staged.column_names and staged.num_rows == 120


@pytest.mark.parametrize("scenario, status, code, words", [
    ("deadline", "timed_out", "timeout", "20s limit"),
    ("oom", "failed", "out_of_memory", "memory"),
    ("evicted", "failed", "sandbox_error", "evicted"),
    ("image_pull", "failed", "sandbox_error", "cannot pull the image"),
])
def test_job_and_pod_conditions_map_to_our_codes(scenario, status, code, words, blobs, config, data, bundle,
                                                 tmp_path):
    predict = (lambda model, data_dir: Pod(oom=True, log="allocating\n")) if scenario == "oom" else model_predict
    cluster = FakeCluster(scenario="complete" if scenario == "oom" else scenario, predict=predict)

    _, evaluation = evaluate(make_sandbox(cluster, blobs, config), bundle, data, config, tmp_path)

    assert (evaluation.status, evaluation.failure["code"]) == (status, code), evaluation.failure
    assert words in evaluation.failure["message"], evaluation.failure["message"]
    assert cluster.jobs == {}  # deleted whatever happened


def test_a_disrupted_pod_is_replaced_by_the_job_and_the_run_still_succeeds(blobs, config, data, bundle, tmp_path):
    cluster = FakeCluster(scenario="disruption", predict=model_predict)

    _, evaluation = evaluate(make_sandbox(cluster, blobs, config), bundle, data, config, tmp_path)

    assert evaluation.succeeded, evaluation.failure
    assert len(cluster.creates) == 1 and len(cluster.seen_inputs) == 1  # one Job; its second pod did the work


def test_a_duplicate_create_is_a_409_and_the_existing_job_is_adopted(blobs, config, tmp_path, data):
    cluster = FakeCluster(predict=lambda model, data_dir: Pod(predictions=b"PAR1-bytes", log="ok\n"))
    sandbox = make_sandbox(cluster, blobs, config)
    model_dir, data_dir = tmp_path / "model", tmp_path / "data-in"
    model_dir.mkdir(), data_dir.mkdir()
    (model_dir / "evaluator.yaml").write_text("name: m\n")
    spec = SandboxSpec(image="evaluator-sklearn:x", model_dir=model_dir, data_dir=data_dir, limits=Limits(),
                       run_id=f"dup-{uuid.uuid4().hex[:6]}", attempt=1)
    # Given the attempt's Job was created already (a create whose answer was lost)
    inputs_key, output_key = exchange_keys(spec.run_id, 1)
    inputs = _pack(model_dir, data_dir)
    blobs.put_bytes(config.results_bucket, inputs_key, inputs)
    cluster.batch.create_namespaced_job("sandboxes", manifests.job_manifest(
        spec, 1, sandbox._placement, inputs_url=blobs.presign_get(config.results_bucket, inputs_key, 600),
        result_url=blobs.presign_put(config.results_bucket, output_key, 600)[0], inputs_bytes=len(inputs)))

    result = sandbox.run(spec)

    assert result.exit_code == 0 and result.predictions == b"PAR1-bytes"
    assert cluster.creates == [manifests.job_name(spec.run_id, 1)]  # created once; the second create was a 409


def test_cancelling_deletes_the_job_and_sweeps_find_this_deployments_jobs(blobs, config, data, bundle, tmp_path):
    cluster = FakeCluster(scenario="hang")
    sandbox = make_sandbox(cluster, blobs, config)
    cancelled = threading.Event()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(
        evaluate(sandbox, bundle, data, config, tmp_path, should_cancel=cancelled.is_set)))
    thread.start()
    deadline = time.monotonic() + 30
    while not sandbox.containers() and time.monotonic() < deadline:
        time.sleep(0.05)
    listed = sandbox.containers()
    assert [(c.worker, c.status) for c in listed] == [("w1", "running")]
    assert make_sandbox(cluster, blobs, config).containers() == []  # another deployment sees none of them

    cancelled.set()
    thread.join(30)

    _, evaluation = outcome[0]
    assert (evaluation.status, evaluation.failure["code"]) == ("cancelled", "cancelled")
    assert cluster.jobs == {} and listed[0].id in cluster.deleted


def test_kill_run_deletes_every_job_of_the_run(blobs, config, tmp_path):
    cluster = FakeCluster(scenario="hang")
    sandbox = make_sandbox(cluster, blobs, config)
    spec = SandboxSpec(image="evaluator-sklearn:x", model_dir=tmp_path, data_dir=tmp_path, limits=Limits(),
                       run_id="run-to-kill")
    for attempt in (1, 2):
        cluster.batch.create_namespaced_job("sandboxes", manifests.job_manifest(
            spec, attempt, sandbox._placement, inputs_url="http://127.0.0.1:9/x", result_url="http://127.0.0.1:9/y",
            inputs_bytes=1))

    assert sandbox.kill_run("run-to-kill") == 2 and cluster.jobs == {}


def test_the_network_policy_is_created_then_replaced(blobs, config):
    cluster = FakeCluster()
    sandbox = make_sandbox(cluster, blobs, config, deployment="prod")
    sandbox.ensure_network_policy()
    sandbox.ensure_network_policy()  # a second worker boots: 409, then replace

    (policy,) = cluster.policies.values()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == []


def test_an_api_server_that_does_not_answer_is_an_infrastructure_error(blobs, config, tmp_path):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens: the real client, a refused connection
    configuration.retries = 0
    api = client.ApiClient(configuration)
    sandbox = KubernetesSandbox(client.BatchV1Api(api), client.CoreV1Api(api), blobs, bucket=config.results_bucket,
                                placement=manifests.Placement(namespace="sandboxes"))
    spec = SandboxSpec(image="evaluator-sklearn:x", model_dir=tmp_path, data_dir=tmp_path, limits=Limits(),
                       run_id="unreachable")

    with pytest.raises(InfrastructureError, match="Kubernetes API did not answer"):
        sandbox.run(spec)
    assert all(blobs.head(config.results_bucket, key) is None for key in exchange_keys("unreachable", 1))
