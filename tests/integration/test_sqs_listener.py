"""AWS S3 -> SQS -> `evaluator listen-sqs`, with moto's server standing in for AWS (it emits S3 events to SQS)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import boto3
import pytest
import redis
import requests

from evaluator.storage.models import ObjectEvent, Run, Submission
from tests.conftest import BIN

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_listen_sqs_turns_an_aws_upload_into_one_run_and_deletes_the_message(moto_endpoint, config, db, admin,
                                                                             redis_url):
    from evaluator.storage.models import Benchmark, Dataset

    # Given a bucket on "AWS" whose ObjectCreated events go to an SQS queue
    aws = dict(endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    s3, sqs = boto3.client("s3", **aws), boto3.client("sqs", **aws)
    bucket = f"aws-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    dataset = Dataset.create(name="iris", version="1", features_key="f", labels_key="l")
    Benchmark.create(id="iris", title="iris", dataset=dataset, task="classification", primary_metric="accuracy",
                     direction="maximize", owner="admin", limits={"max_bundle_bytes": 1000})
    key = "bundles/iris/alice/m.1_x-y/1/upload.tar.gz"
    Submission.create(benchmark="iris", owner="alice", name="m.1_x-y", version="1", bucket=bucket,
                      object_key=key)  # the grant: an object no grant issued would start nothing
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    assert requests.put(url, data=b"bundle bytes", timeout=10).ok

    # When the listener runs (twice: a second receive must find nothing left)
    env = {**os.environ, **config.replace(bundles_bucket=bucket, sqs_queue_url=queue, sqs_endpoint_url=moto_endpoint,
                                          sqs_wait_s=1, s3_endpoint_url=moto_endpoint).to_env()}
    first = subprocess.run([str(BIN / "evaluator"), "listen-sqs", "--once"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([str(BIN / "evaluator"), "listen-sqs", "--once"], env=env, capture_output=True,
                            text=True, timeout=60)

    # Then the test event was skipped, the upload became one run, and the messages are gone
    assert "handled 2 messages" in first.stdout, first.stdout + first.stderr  # s3:TestEvent + the upload
    assert "handled 0 messages" in second.stdout
    submission = Submission.get(Submission.object_key == key)
    assert (submission.owner, submission.name) == ("alice", "m.1_x-y")
    assert Run.select().count() == 1 and ObjectEvent.get().source == "aws"
    # And the evaluation message is on the configured Redis, carrying the run id
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(m) for m in client.hvals(f"{config.broker_namespace}:cpu.msgs")]
    assert [m["args"] for m in messages] == [[str(Run.get().id)]]
