"""One run on a real Kubernetes cluster, when one is given; reported as skipped otherwise.

EVALUATOR_TEST_KUBECONFIG: a kubeconfig whose context may create Jobs in EVALUATOR_TEST_K8S_NAMESPACE
(default evaluator-sandboxes); EVALUATOR_TEST_K8S_IMAGE_PREFIX: where the nodes pull the framework images
from (e.g. registry.example/evaluator-). The S3 server of the tests must be reachable from the pods at
EVALUATOR_TEST_K8S_S3_URL (the presigned URLs are signed for it).
"""

from __future__ import annotations

import os
import uuid

import pytest
from sklearn.linear_model import LogisticRegression

from evaluator.evaluation import evaluate_bundle
from evaluator.sandbox.kubernetes_manifests import Placement
from evaluator.sandbox.kubernetes_runner import KubernetesSandbox
from evaluator.settings import Scoring
from evaluator.storage.blobs import BlobStore
from tests.integration import sandbox_fixtures as fx

pytestmark = pytest.mark.integration

KUBECONFIG = os.environ.get("EVALUATOR_TEST_KUBECONFIG", "")
PREFIX = os.environ.get("EVALUATOR_TEST_K8S_IMAGE_PREFIX", "")
S3_URL = os.environ.get("EVALUATOR_TEST_K8S_S3_URL", "")


@pytest.mark.skipif(not (KUBECONFIG and PREFIX and S3_URL),
                    reason="no cluster: set EVALUATOR_TEST_KUBECONFIG, _K8S_IMAGE_PREFIX and _K8S_S3_URL")
def test_a_run_succeeds_as_a_job_on_a_real_cluster(config, tmp_path):
    x, y, features, labels = fx.classification_data(tmp_path / "data")
    bundle = fx.sklearn_bundle(tmp_path / "good.tar.gz", LogisticRegression(max_iter=300).fit(x, y))
    cluster_config = config.replace(s3_public_endpoint_url=S3_URL, image_prefix=PREFIX)
    sandbox = KubernetesSandbox.from_kubeconfig(
        BlobStore.from_config(cluster_config), bucket=config.results_bucket, kubeconfig=KUBECONFIG,
        placement=Placement(namespace=os.environ.get("EVALUATOR_TEST_K8S_NAMESPACE", "evaluator-sandboxes"),
                            deployment=f"test-{uuid.uuid4().hex[:6]}"))
    sandbox.ensure_network_policy()
    run_id = f"cluster-{uuid.uuid4().hex[:8]}"

    evaluation = evaluate_bundle(bundle, features, labels, scoring=Scoring("classification"), sandbox=sandbox,
                                 config=cluster_config, work_dir=tmp_path / run_id, run_id=run_id)

    assert evaluation.succeeded, evaluation.failure
    assert evaluation.metrics["metrics"]["accuracy"] > 0.8
    assert sandbox.containers() == []
