"""Flask API: partners submit portraits, poll jobs and download results.

`create_app(settings)` builds everything a request needs (database sessions, storage, the Celery
publisher) once, and stores them in `app.extensions["portraits"]`; views stay thin.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from celery import Celery
from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api import db
from api.key_cache import KeyCache
from api.waits import JobWaits
from shared import logs
from shared.db import make_engine, make_session_factory
from shared.queue import make_celery
from shared.settings import Settings, get_settings
from shared.storage import Storage


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    celery: Celery
    model: dict  # {"name", "version"} of the configured weights, from their model card
    keys: KeyCache  # recently verified API keys (api/key_cache.py)
    reads: Engine  # each request's reads: autocommit, no pre-ping, a pool of their own (api/db.py)
    waits: JobWaits  # long polls, GET /v1/jobs/<id>?wait= (api/waits.py)

    def close(self) -> None:
        """Stop the long polls' listener and close every pooled database connection (tests, benches)."""
        self.waits.close()
        self.engine.dispose()
        self.reads.dispose()


def configured_model(settings: Settings) -> dict:
    """Name and version of the weights the workers are configured to load (read from the card, so
    the API needs no torch)."""
    card_path = settings.model_weights.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
        return {"name": str(card["name"]), "version": str(card["version"])}
    except (OSError, ValueError, KeyError):
        logging.getLogger(__name__).warning("no readable model card at %s", card_path)
        return {"name": settings.model_weights.stem, "version": "unknown"}


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    logs.configure(settings.log_format)
    app = Flask(__name__)
    # Werkzeug answers 413 itself past this size, before the body is read.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    engine = make_engine(settings.database_url, "portraits-api")
    app.extensions["portraits"] = Services(
        settings=settings, engine=engine, sessions=make_session_factory(engine),
        storage=Storage(settings), celery=make_celery(settings), model=configured_model(settings),
        keys=KeyCache(settings.key_cache_seconds), reads=db.reads_engine(settings.database_url),
        waits=JobWaits(settings.database_url, settings.poll_waiters_per_process))
    db.install(app)

    from api import (admin, auth, cli, errors, faces, health, jobs, limits, listing, logcontext, metrics,
                     openapi, pages)

    metrics.install(app)  # first: its timer starts before any other hook can answer
    errors.register(app)
    auth.register(app)  # before the limiter's hook, so limits are counted per key
    pages.register(app)  # the console (/) and dashboard (/admin), signed in by session; before the limiter
    logcontext.install(app)  # after auth: the partner is known
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(faces.bp)
    app.register_blueprint(listing.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(openapi.bp)
    limits.install(app, settings)
    cli.register(app)
    return app
