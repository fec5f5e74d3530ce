"""`evaluator store init`: the buckets and their CORS on any S3 store, for deployments without `evaluator dev`.

docker-compose.yml's SeaweedFS profile runs it once before the API starts (MinIO's init uses `mc`, which also
subscribes the bucket events). Idempotent; it waits for a store that is still starting.
"""

from __future__ import annotations

import argparse
import logging
import time

from evaluator.config import Config
from evaluator.errors import EvaluatorError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    store = subparsers.add_parser("store", help="object store setup").add_subparsers(dest="store_command",
                                                                                     metavar="COMMAND")
    init = store.add_parser("init", help="create the buckets (idempotent) and let the web pages upload")
    init.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the store to answer")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    from evaluator.storage.blobs import BlobStore

    blobs = BlobStore.from_config(config)
    buckets = (config.datasets_bucket, config.bundles_bucket, config.results_bucket)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            blobs.ensure_buckets(*buckets)
            break
        except EvaluatorError as ex:
            if time.monotonic() > deadline:
                raise
            logger.info("store not ready yet: %s", ex.message)
            time.sleep(1.0)
    try:
        blobs.set_cors(config.bundles_bucket, config.cors_origins)
    except EvaluatorError as ex:  # MinIO's community edition: global CORS only (MINIO_API_CORS_ALLOW_ORIGIN)
        print(f"note: per-bucket CORS not set ({ex.message}); the store's global CORS applies")
    print(f"buckets ready at {config.s3_endpoint_url}: {', '.join(dict.fromkeys(buckets))}")
    return 0
