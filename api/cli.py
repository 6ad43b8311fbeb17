"""Operator commands: `portraits jobs failed|show|requeue|requeue-failed|sweep`,
`portraits partners create|purge NAME`, `portraits keys create|list|revoke`.

`portraits` (`main()`, a console script) finds the stack's settings itself (see api.cli_env) and
refuses a database it cannot reach or that lacks the schema; `flask --app api ...` runs the same
commands with the environment as it is.
"""
from __future__ import annotations

import functools
import sys
import time
import uuid

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy import select

from shared import lifecycle
from shared.models import Job, JobStatus

IN_FLIGHT_SECONDS = 5.0  # `partners purge`: time for a submit accepted before a revocation to commit


def register(app: Flask) -> None:
    for group in (jobs, partners, keys):
        app.cli.add_command(group)


@click.group(cls=AppGroup, help="Inspect and repair jobs.")
def jobs():
    pass


def _services():
    return current_app.extensions["portraits"]


@jobs.command("failed", help="List failed jobs, newest first.")
@click.option("--since", help="Only jobs created at or after this ISO 8601 time.")
@click.option("--q", help="Job id prefix or text in the error.")
@click.option("--limit", default=50, show_default=True)
def failed(since, q, limit):
    from api.admin import job_filter

    with _services().sessions() as session:
        rows = session.scalars(select(Job).where(*job_filter({"status": "failed", "since": since, "q": q}))
                               .order_by(Job.created_at.desc()).limit(limit)).all()
        # Operators need the internal detail (the last event's error), not only the partner's message.
        detail = {job.id: next((e.error for e in reversed(lifecycle.events(session, job.id)) if e.error), "")
                  for job in rows}
    for job in rows:
        click.echo(f"{job.id}  {job.created_at:%Y-%m-%d %H:%M:%S}  attempts={job.attempts}  "
                   f"{job.error_code}: {detail[job.id] or job.error}")
    click.echo(f"{len(rows)} failed job(s)")


@jobs.command("show", help="A job and its event history.")
@click.argument("job_id", type=click.UUID)
def show(job_id: uuid.UUID):
    with _services().sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        click.echo(f"{job.id}  {job.status.value}  attempts={job.attempts}/{job.attempts_allowed}  {job.error or ''}")
        for e in lifecycle.events(session, job_id):
            click.echo(f"  {e.at:%H:%M:%S}  {e.from_status.value if e.from_status else '-':>9} → "
                       f"{e.to_status.value:<9} attempt={e.attempt}  {e.worker or e.actor or ''}  "
                       f"{e.error or e.reason or ''}")


@jobs.command("requeue", help="Requeue failed or cancelled jobs by id.")
@click.argument("job_ids", nargs=-1, required=True, type=click.UUID)
@click.option("--reason", required=True)
@click.option("--actor", default="operator-cli", show_default=True)
def requeue(job_ids, reason, actor):
    from api.admin import requeue_ids

    moved = requeue_ids(list(job_ids), actor, reason)
    for job_id in job_ids:
        click.echo(f"{job_id}  {'requeued' if job_id in moved else 'not failed/cancelled: left alone'}")


@jobs.command("requeue-failed", help="Requeue every failed job matching the filter.")
@click.option("--since")
@click.option("--q")
@click.option("--reason", required=True)
@click.option("--actor", default="operator-cli", show_default=True)
def requeue_failed(since, q, reason, actor):
    from api.admin import job_filter, requeue_ids

    with _services().sessions() as session:
        ids = list(session.scalars(select(Job.id).where(
            *job_filter({"status": JobStatus.FAILED.value, "since": since, "q": q}))))
    moved = requeue_ids(ids, actor, reason)
    click.echo(f"requeued {len(moved)} of {len(ids)} matching job(s)")


@jobs.command("sweep", help="Run one sweeper pass now (expire leases, publish lost messages).")
def sweep():
    from worker.sweeper import sweep_once

    services = _services()
    click.echo(str(sweep_once(services.sessions, services.celery, services.settings)))


@click.group(cls=AppGroup, help="Partners and their API keys.")
def partners():
    pass


@partners.command("create", help="Create a partner and its first key; prints the key and webhook secret once.")
@click.argument("name")
@click.option("--callback-url", help="Default callback URL for jobs submitted with this key.")
def partners_create(name, callback_url):
    from shared.accounts import PARTNER, create_key, create_partner
    from shared.webhooks import check_callback_url

    if callback_url:
        check_callback_url(callback_url, allow_private=_services().settings.allow_private_callbacks)
    with _services().sessions() as session, session.begin():
        partner = create_partner(session, name)
        row, key = create_key(session, role=PARTNER, name=f"{name}-default", partner=partner,
                              callback_url=callback_url)
        click.echo(f"partner {partner.id} ({name})")
        click.echo(f"api key {row.id}: {key}")
        click.echo(f"webhook secret: {partner.webhook_secret}")
        click.echo("Store both now: the key is shown only once.")


@partners.command("purge", help="Erase every job of a partner (originals and results deleted, rows kept as "
                                "`erased` tombstones) and revoke all its keys. The partner row is kept. "
                                "Idempotent: run it again to finish a purge that storage interrupted.")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: nothing erased can be restored.")
@click.option("--actor", default="operator-cli", show_default=True)
def partners_purge(name, yes, actor):
    from sqlalchemy import func, or_, update

    from shared.accounts import ApiKey, Partner
    from shared.retention import erase_job

    services = _services()

    def unerased() -> list[uuid.UUID]:  # not yet erased, or erased with objects perhaps left
        with services.sessions() as session:
            return list(session.scalars(
                select(Job.id).where(Job.partner_id == partner.id,
                                     or_(Job.status != JobStatus.ERASED, Job.result_key.is_not(None)))
                .order_by(Job.created_at)))

    with services.sessions() as session:
        partner = session.scalar(select(Partner).where(Partner.name == name))
    if partner is None:
        raise click.ClickException(f"no partner named {name!r}")
    if not yes:
        raise click.ClickException(f"this erases the images of {len(unerased())} job(s) of {name!r} and "
                                   "revokes its keys, for good; add --yes to do it")
    with services.sessions() as session, session.begin():  # first: no new job arrives meanwhile
        revoked = session.execute(update(ApiKey).where(ApiKey.partner_id == partner.id,
                                                       ApiKey.revoked_at.is_(None))
                                  .values(revoked_at=func.now())).rowcount
    revoked_at = time.monotonic()
    attempted, erased, failed = set(), 0, 0

    def erase_new() -> None:  # until none is left: a submit in flight may commit its job meanwhile
        nonlocal erased, failed
        while todo := [job_id for job_id in unerased() if job_id not in attempted]:
            for job_id in todo:
                attempted.add(job_id)
                try:
                    erased += erase_job(services.sessions, services.storage, job_id, actor,
                                        reason=f"partner {name!r} purged")[1]
                except Exception as exc:
                    failed += 1
                    click.echo(f"{job_id}  not fully erased: {type(exc).__name__}: {str(exc)[:200]}",
                               err=True)

    erase_new()
    # An API process trusts a key it verified within KEY_CACHE_SECONDS, so a submit may still be accepted
    # that long after the revocation (and commit its job a moment later): wait it out, then erase again.
    wait = services.settings.key_cache_seconds + IN_FLIGHT_SECONDS - (time.monotonic() - revoked_at)
    if revoked and wait > 0:
        click.echo(f"waiting {wait:.0f} s for API processes to forget the revoked keys", err=True)
        time.sleep(wait)
        erase_new()
    click.echo(f"partner {partner.id} ({name}): revoked {revoked} key(s); erased {erased} job(s); "
               f"the partner and its jobs stay as tombstones, without images")
    if failed:
        raise click.ClickException(f"{failed} job(s) not fully erased (database or storage errors above); "
                                   "run the purge again")


@click.group(cls=AppGroup, help="API keys: create, list, revoke.")
def keys():
    pass


@keys.command("create", help="A new key for a partner (--partner NAME) or an admin key (--admin).")
@click.option("--partner", "partner_name")
@click.option("--admin", is_flag=True)
@click.option("--name", required=True)
@click.option("--callback-url")
def keys_create(partner_name, admin, name, callback_url):
    from shared.accounts import ADMIN, PARTNER, Partner, create_key

    if bool(partner_name) == admin:
        raise click.UsageError("give exactly one of --partner NAME or --admin")
    with _services().sessions() as session, session.begin():
        partner = None
        if partner_name:
            partner = session.scalar(select(Partner).where(Partner.name == partner_name))
            if partner is None:
                raise click.ClickException(f"no partner named {partner_name!r}")
        row, key = create_key(session, role=ADMIN if admin else PARTNER, name=name, partner=partner,
                              callback_url=callback_url)
    click.echo(f"api key {row.id} ({row.role}): {key}")
    click.echo("Store it now: it is shown only once.")


@keys.command("list", help="Every key, with its prefix, partner, and created/last-used/revoked times.")
def keys_list():
    from shared.accounts import ApiKey, Partner

    with _services().sessions() as session:
        rows = session.execute(select(ApiKey, Partner.name).outerjoin(Partner, ApiKey.partner_id == Partner.id)
                               .order_by(ApiKey.created_at)).all()
    for key, partner in rows:
        d = key.to_dict()
        click.echo(f"{d['id']}  {d['prefix']}…  {d['role']:<7} {partner or '-':<20} {d['name']:<20} "
                   f"created={d['created_at']} last_used={d['last_used_at']} revoked={d['revoked_at']}")


@keys.command("revoke", help="Revoke a key at once; it can never be used again.")
@click.argument("key_id", type=click.UUID)
def keys_revoke(key_id):
    from sqlalchemy import func, update

    from shared.accounts import ApiKey

    with _services().sessions() as session, session.begin():
        result = session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                                 .values(revoked_at=func.now()))
    if result.rowcount != 1:
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


@click.group(help="Operate the portrait service: jobs, partners and API keys. Settings come from the "
                  "checkout's .local/env (or PORTRAITS_ENV_FILE); variables already set win.")
def portraits():
    pass


for _group in (jobs, partners, keys):
    portraits.add_command(_group)


def _checked_app(source: str) -> Flask:
    """The app, once the database answers and holds this code's schema (run only by a command)."""
    from pydantic import ValidationError

    from api import create_app
    from api.cli_env import describe_database, schema_problem
    from shared.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings ({source}): " + "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())) from None
    click.echo(f"portraits: {source}; database {describe_database(settings.database_url)}", err=True)
    problem = schema_problem(settings.database_url)
    if problem:
        raise click.ClickException(problem)
    return create_app(settings)


def main(argv: list[str] | None = None) -> None:
    """The `portraits` console script: every command checks the database first; --help needs none."""
    from api.cli_env import EnvFileMissing, load_env

    try:
        source = load_env()  # before get_settings() is first called
    except EnvFileMissing as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    portraits.main(args=argv, prog_name="portraits",
                   obj=ScriptInfo(create_app=functools.partial(_checked_app, source), set_debug_flag=False))
