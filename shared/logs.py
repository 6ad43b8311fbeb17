"""Log set-up for the service's own processes (API, sweeper, webhook deliverer; Celery configures the
worker's). One format everywhere, INFO and up: job transitions (logger `jobs`) are INFO lines."""
from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure() -> None:
    """Send INFO and up to stderr, unless the host (gunicorn with --log-config, pytest) already set up
    the root logger."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=FORMAT)
