"""Resources for submissions: the upload grant, multipart completion, and reading one back."""

from __future__ import annotations

import falcon

from evaluator import submissions
from evaluator.api.operations import TOKEN, operation, roles
from evaluator.config import Config
from evaluator.contract import inputs, outputs
from evaluator.storage.blobs import BlobStore

submitter = roles("participant", "admin", "owner")  # an owner: baselines on its own benchmarks only


class BenchmarkSubmissions:
    def __init__(self, config: Config, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs

    @operation("listSubmissions", "The caller's submissions to a benchmark (an admin's: everyone's)",
               tag="submissions", access=TOKEN, responses={200: outputs.SubmissionList}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        rows = submissions.list_submissions(benchmark_id, req.context.principal)
        resp.media = {"items": [submissions.serialize(s) for s in rows]}

    @operation("createSubmission", "Create a submission and get its upload grant (PUT, POST policy or multipart)",
               tag="submissions", access=submitter, body=inputs.SubmissionIn,
               responses={201: outputs.SubmissionCreated}, errors=(404, 409, 429, 503),
               description="A file named .tar.gz, .tgz or .zip is a model bundle; .csv or .parquet a predictions file "
                           "(row_id, prediction, optional proba__<class>), for benchmarks whose "
                           "settings.submission_kinds include it (else 422 kind_not_accepted). `baseline: true` "
                           "(managers) makes a reference entry: on the leaderboard, never ranked, no quota.")
    def on_post(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        submission, grant = submissions.create_submission(
            benchmark_id, req.context.body, req.context.principal, blobs=self._blobs, config=self._config
        )
        resp.status, resp.location = falcon.HTTP_201, f"/v1/submissions/{submission.id}"
        resp.media = {"submission": submissions.serialize(submission, new=True), "upload": grant}


class SubmissionItem:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    @operation("getSubmission", "One of the caller's submissions", tag="submissions", access=TOKEN,
               responses={200: outputs.Submission}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, submission_id: str) -> None:
        resp.media = submissions.serialize(submissions.get_submission(submission_id, req.context.principal))

    @operation("completeMultipart", "Complete a multipart upload with its parts' ETags", tag="submissions",
               access=TOKEN, body=inputs.MultipartComplete, responses={200: outputs.Submission},
               errors=(404, 409, 503))
    def on_post_complete(self, req: falcon.Request, resp: falcon.Response, submission_id: str) -> None:
        submission = submissions.complete_multipart(
            submission_id, req.context.body, req.context.principal, blobs=self._blobs
        )
        resp.media = submissions.serialize(submission)
