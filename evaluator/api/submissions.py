"""Resources for submissions: the upload grant, multipart completion, and reading one back."""

from __future__ import annotations

import falcon

from evaluator import submissions
from evaluator.api.hooks import authenticated, json_body, role
from evaluator.config import Config
from evaluator.storage.blobs import BlobStore

submitter = role("participant", "admin")


class BenchmarkSubmissions:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        rows = submissions.list_submissions(benchmark_id, req.context.principal)
        resp.media = {"items": [submissions.serialize(s) for s in rows]}

    @falcon.before(submitter)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        submission, grant = submissions.create_submission(
            benchmark_id, req.context.body, req.context.principal, blobs=self._blobs, config=self._config
        )
        resp.status, resp.location = falcon.HTTP_201, f"/v1/submissions/{submission.id}"
        resp.media = {"submission": submissions.serialize(submission, new=True), "upload": grant}


class SubmissionItem:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    @falcon.before(authenticated)
    def on_get(self, req: falcon.Request, resp: falcon.Response, submission_id: str) -> None:
        resp.media = submissions.serialize(submissions.get_submission(submission_id, req.context.principal))

    @falcon.before(authenticated)
    @falcon.before(json_body)
    def on_post_complete(self, req: falcon.Request, resp: falcon.Response, submission_id: str) -> None:
        submission = submissions.complete_multipart(
            submission_id, req.context.body, req.context.principal, blobs=self._blobs
        )
        resp.media = submissions.serialize(submission)
