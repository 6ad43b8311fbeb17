"""Every process sees the whole schema. The worker once never imported `shared.accounts`, so its
metadata lacked `partners`, and the first callback job's outbox insert failed with
NoReferencedTableError: each process entry point is imported here in a fresh interpreter, exactly as
its Procfile/compose command imports it, and its metadata is compared with the migrated database."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect

from tests.processes import ROOT, service_env

ENTRY_POINTS = {
    "api (gunicorn api:create_app())": "import api; api.create_app()",
    "worker (celery -A worker.app)": "import worker.app",
    "sweeper (python -m worker.sweeper)": "import worker.sweeper",
    "webhooks (python -m worker.webhooks)": "import worker.webhooks",
    "operator CLI (portraits)": "import api.cli",
    "anything with a session (shared.db)": "import shared.db",
}

PROBE = """
import json, sys
{load}
from shared.models import Base
tables = Base.metadata.tables
for table in tables.values():
    for fk in table.foreign_keys:
        fk.column  # raises NoReferencedTableError when the referenced table is missing
print(json.dumps(sorted(tables)))
"""


@pytest.fixture(scope="module")
def migrated_tables(settings) -> set[str]:
    engine = create_engine(settings.database_url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_process_registers_every_table(name, settings, migrated_tables):
    result = subprocess.run([sys.executable, "-c", PROBE.format(load=ENTRY_POINTS[name])], cwd=ROOT,
                            env=service_env(settings), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout.splitlines()[-1])) == migrated_tables


def test_migrations_and_the_models_describe_the_same_schema(settings):
    """Alembic's autogenerate finds nothing to change between the migrated database and the models:
    every column, index (partial ones included) and constraint is declared in both places."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shared.tables import metadata

    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
