"""Event parsing: three stores' shapes into one ObjectCreated record."""

import base64

import pytest

from evaluator.errors import ValidationFailed
from evaluator.events import parse_notification, parse_s3_records


def s3_record(name="s3:ObjectCreated:Put", key="bundles%2Fteam+a%2Fm+1%2Bx.tar.gz", source="minio:s3", **obj):
    return {"eventName": name, "eventSource": source,
            "s3": {"bucket": {"name": "evaluator"}, "object": {"key": key, "size": 11, "eTag": '"abc"', **obj}}}


def test_minio_webhook_body_decodes_query_escaped_keys():
    body = {"EventName": "s3:ObjectCreated:Put", "Key": "evaluator/bundles/team a/m 1+x.tar.gz",
            "Records": [s3_record(sequencer="17A", versionId="v1")]}
    [record] = parse_notification(body)
    assert (record.bucket, record.key, record.size, record.etag) == (
        "evaluator", "bundles/team a/m 1+x.tar.gz", 11, "abc")
    assert (record.source, record.version, record.sequencer, record.dedupe_version) == ("minio", "v1", "17A", "v1")


def test_aws_names_have_no_prefix_and_test_events_carry_no_records():
    [record] = parse_s3_records({"Records": [s3_record(name="ObjectCreated:CompleteMultipartUpload",
                                                       source="aws:s3")]})
    assert record.source == "aws" and record.dedupe_version == "abc"
    assert parse_notification({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "evaluator"}) == []


@pytest.mark.parametrize("name", ["s3:ObjectRemoved:Delete", "s3:ObjectCreated:PutTagging",
                                  "s3:ObjectCreated:PutRetention", "s3:ObjectAccessed:Get"])
def test_events_that_create_no_content_yield_nothing(name):
    assert parse_notification({"Records": [s3_record(name=name)]}) == []


def seaweed(event_type="create", key="/buckets/evaluator/bundles/a b/x+y.tar.gz", **entry):
    etag = base64.b64encode(b"5d41402abc4b2a76b9719d911017c592").decode()
    new_entry = {"name": key.rsplit("/", 1)[-1], "attributes": {"file_size": 5, "mtime": 1796040407},
                 "extended": {"Seaweed-X-Amz-ETag": etag}, **entry}
    return {"event_type": event_type, "key": key, "message": {"new_entry": new_entry}}


def test_seaweedfs_filer_event_keys_are_not_url_encoded():
    [record] = parse_notification(seaweed())
    assert (record.bucket, record.key, record.size) == ("evaluator", "bundles/a b/x+y.tar.gz", 5)
    assert record.etag == "5d41402abc4b2a76b9719d911017c592" and record.source == "seaweedfs"


@pytest.mark.parametrize("body", [
    seaweed(is_directory=True),
    seaweed(event_type="delete"),
    seaweed(key="/buckets/.system/x"),
    seaweed(key="/buckets/evaluator/.uploads/abc/0001.part"),
    seaweed(key="/topics/x"),
])
def test_seaweedfs_noise_yields_nothing(body):
    assert parse_notification(body) == []


@pytest.mark.parametrize("body", [[1], "x", {"hello": "world"}, {"Records": "nope"}, {"Records": [{"eventName":
                                  "s3:ObjectCreated:Put"}]}])
def test_malformed_bodies_are_refused_with_a_field(body):
    with pytest.raises(ValidationFailed):
        parse_notification(body)
