"""The one place that registers every table on `Base.metadata`.

SQLAlchemy resolves a foreign key (e.g. `webhook_deliveries.partner_id → partners.id`) only when the
referenced table's module was imported in that process. Each table lives beside the code that owns it
(`models`, `accounts`, `idempotency`, `webhooks`), so a process that happened not to import one of
them (the worker never touched `accounts`) failed its first insert with `NoReferencedTableError`.
`shared.db` imports this module, so every process that can open a session has the whole schema;
`tests/test_tables.py` checks each process entry point in a fresh interpreter.
"""
from __future__ import annotations

import shared.accounts  # noqa: F401  (partners, api_keys)
import shared.idempotency  # noqa: F401  (idempotency_keys)
import shared.uploads  # noqa: F401  (pending_uploads)
import shared.webhooks  # noqa: F401  (webhook_deliveries)
from shared.models import Base

metadata = Base.metadata
TABLES = frozenset({"jobs", "job_events", "partners", "api_keys", "idempotency_keys", "webhook_deliveries",
                    "pending_uploads"})
