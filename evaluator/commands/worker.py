"""`evaluator worker | api | reconcile | listen-sqs`: the long-running processes, thin."""

from __future__ import annotations

import argparse
import json
import os
import sys

from evaluator.config import Config


def register(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser("worker", help="run Dramatiq workers (the run queues this host serves, datasets, "
                                                  "maintenance; EVALUATOR_WORKER_CAPABILITIES)")
    worker.add_argument("--processes", type=int, default=2)
    worker.add_argument("--threads", type=int, default=1, help="concurrent runs per process")
    worker.set_defaults(func=run_worker)
    api = subparsers.add_parser("api", help="run the API under gunicorn (settings: evaluator.api.gunicorn_settings)")
    api.set_defaults(func=run_api)
    reconcile = subparsers.add_parser("reconcile", help="re-enqueue lost uploads and stuck runs once")
    reconcile.set_defaults(func=run_reconcile)
    sqs = subparsers.add_parser("listen-sqs", help="pull AWS S3 notifications from SQS (EVALUATOR_SQS_QUEUE_URL)")
    sqs.add_argument("--once", action="store_true", help="one receive, then exit")
    sqs.set_defaults(func=run_listen_sqs)


def run_worker(args: argparse.Namespace, config: Config) -> int:
    config.check_secrets()  # before the fork: one line from the CLI instead of one per process
    # One message at a time per thread: a slow or killed worker must not sit on prefetched runs.
    env = {**os.environ, "dramatiq_queue_prefetch": "1"}
    command = [sys.executable, "-m", "dramatiq", "evaluator.worker.broker:setup", "evaluator.worker.actors",
               "--processes", str(args.processes), "--threads", str(args.threads)]
    os.execvpe(command[0], command, env)
    return 0  # not reached


def run_api(args: argparse.Namespace, config: Config) -> int:
    config.check_secrets()
    from evaluator.api.gunicorn_settings import ApiServer, settings

    ApiServer(settings(config)).run()  # returns only by SystemExit (gunicorn's arbiter halts)
    return 0


def run_reconcile(args: argparse.Namespace, config: Config) -> int:
    from evaluator import reconcile
    from evaluator.commands.db import open_database, operator_config
    from evaluator.storage.blobs import BlobStore
    from evaluator.worker.broker import setup

    config = operator_config(config)  # `evaluator dev`'s database, store and broker when none is set
    open_database(config)
    setup(config)
    from evaluator.worker import actors

    report = reconcile.reconcile(config=config, blobs=BlobStore.from_config(config), queues=actors.queues())
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def run_listen_sqs(args: argparse.Namespace, config: Config) -> int:
    from evaluator import intake, sqs
    from evaluator.errors import ValidationFailed
    from evaluator.storage.db import database, init_database
    from evaluator.worker.broker import setup

    if not config.sqs_queue_url:
        raise ValidationFailed("set EVALUATOR_SQS_QUEUE_URL to the queue that receives the bucket's events")
    from evaluator.observability import folders

    folders.use_folder(config, "sqs")  # its intake samples, served by the /metrics of an API on this host
    init_database(config.database_url)
    setup(config)
    from evaluator.worker import actors

    queues = actors.queues()

    def ingest(records):
        with database.connection_context():
            return intake.ingest(records, database=database, config=config, queues=queues)

    client = sqs.make_sqs_client(config)
    if args.once:
        print(f"handled {sqs.poll_once(client, config.sqs_queue_url, ingest, wait_s=config.sqs_wait_s)} messages")
    else:
        sqs.listen(client, config.sqs_queue_url, ingest, wait_s=config.sqs_wait_s)
    return 0
