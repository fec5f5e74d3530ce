"""configure_logging(config): called by entry points only (the name avoids the stdlib's)."""

from __future__ import annotations

import logging

from evaluator.config import Config


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    # botocore logs request details (presigned URLs included) at DEBUG; never below INFO.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
