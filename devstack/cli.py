"""`python -m devstack COMMAND`: what the Makefile calls.

  up       decide each service, write .local/env, .local/stack.json and .local/Procfile.services
  exec     decide, start the local services a command needs, run it with their settings, stop them
  serve    run one local service in the foreground until SIGTERM/SIGINT (a Procfile.services line)
  check    exit 1 when a local fallback is needed but its wheel is missing (make installs it then)
  howto    print the API URL and a curl session;  portrait  write a 128x128 test portrait
  key      create an API key for the local partner "local-dev" in the running stack's database:
           the key alone on stdout (KEY=$(python -m devstack key)), its webhook secret on stderr
  guard    --port N -- COMMAND: run COMMAND holding .local/run.lock (one stack per checkout);
           refuse, naming the running stack's API port and pid, when it is held.
           Without a command: only check (exit 1 while a stack holds the lock)
"""
from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from devstack import guard, howto, postgres, s3, stack

# honcho SIGKILLs a process group 5 s after its SIGTERM. We must be gone by then: killed, we could not
# stop our service, which runs in its own session (and weed, still holding honcho's output pipe, would
# keep honcho waiting). weed usually stops in 2-3 s but was once seen to take 12 s after serving jobs.
SERVE_STOP_TIMEOUT = 4.0


def _decide(local_dir: Path, write: bool = True) -> dict[str, stack.Decision]:
    state = local_dir / "stack.json"
    decisions = stack.resolve(local_dir, previous=stack.load(state))
    if write:
        local_dir.mkdir(parents=True, exist_ok=True)
        stack.save(state, decisions)
        _write_env(local_dir / "env", decisions)
        _write_procfile(local_dir, decisions)
    return decisions


def _write_env(path: Path, decisions: dict[str, stack.Decision]) -> None:
    # KEY=VALUE only (honcho parses it with shlex; quoting only where a value needs it).
    lines = ["# Written by `python -m devstack up`: the services `make run` and `make test` use."]
    lines += [f"{k}={shlex.quote(v)}" for d in decisions.values() for k, v in d.env.items()]
    lines.append(f"SECRET_KEY={_secret_key(path)}")  # signs the pages' sessions (README "Pages")
    stack.write_private(path, "\n".join(lines) + "\n")


def _secret_key(path: Path) -> str:
    """The SECRET_KEY the env file already holds, else a new random one: kept across runs, so a restarted
    stack signs nobody out of the pages."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name == "SECRET_KEY" and value:
                return value
    except OSError:
        pass
    return secrets.token_hex(32)


def _write_procfile(local_dir: Path, decisions: dict[str, stack.Decision]) -> None:
    # exec: honcho runs each line with `sh -c`, and dash would otherwise stay in between, die of
    # honcho's SIGTERM first and report the service as killed while it is still shutting down.
    serve = f"exec {shlex.quote(sys.executable)} -m devstack --dir {shlex.quote(str(local_dir))} serve"
    lines = [f"{d.service}: {serve} {d.service}" for d in decisions.values()
             if d.source == "local" and not d.running]
    (local_dir / "Procfile.services").write_text("".join(line + "\n" for line in lines))


def _prepare(decisions: dict[str, stack.Decision]) -> None:
    """Create the database and bucket on servers we did not start (ours create their own)."""
    pg, bucket = decisions["postgres"], decisions["s3"]
    try:
        if pg.source != "local" and postgres.ensure_database(pg.env["DATABASE_URL"]):
            print(f"devstack: created database {pg.env['DATABASE_URL'].rpartition('/')[2]}")
        if bucket.source != "local":
            e = bucket.env
            s3.ensure_bucket(e["S3_ENDPOINT"], e["S3_ACCESS_KEY"], e["S3_SECRET_KEY"], e["S3_BUCKET"],
                             e["S3_REGION"], secure=e["S3_SECURE"].lower() in ("1", "true", "yes", "on"))
    except Exception as exc:  # the app reports it again, in context; do not block `make run` here
        print(f"devstack: warning: {exc}", file=sys.stderr)


def _describe(d: stack.Decision) -> str:
    where = d.env.get("DATABASE_URL") or d.env.get("REDIS_URL") or d.env.get("S3_ENDPOINT")
    extra = ""
    if d.source == "local":
        extra = " (already running)" if d.running else f" (ours, data in {d.local['dir']})"
    note = f"  [{d.note}]" if d.note else ""
    return f"devstack: {d.service:<9}{d.source:<8}{where}{extra}{note}"


def cmd_up(args) -> int:
    decisions = _decide(args.dir)
    _prepare(decisions)
    for d in decisions.values():
        print(_describe(d))
    missing = [m for d in decisions.values() if d.source == "local" and (m := stack.local_binary_missing(d))]
    for message in missing:
        print(f"devstack: error: {message}", file=sys.stderr)
    return 1 if missing else 0


def cmd_check(args) -> int:
    decisions = _decide(args.dir, write=False)
    missing = [m for d in decisions.values() if d.source == "local" and not d.running
               and (m := stack.local_binary_missing(d))]
    for message in missing:
        print(f"devstack: {message}")
    return 1 if missing else 0


def cmd_exec(args) -> int:
    if not args.command:
        sys.exit("devstack exec: give a command after --")
    decisions = _decide(args.dir)
    _prepare(decisions)
    started, env = [], dict(os.environ)
    try:
        for name in args.services:
            d = decisions[name]
            print(_describe(d), flush=True)
            if d.source == "local" and not d.running:
                started.append(stack.start_local(d, log_dir=args.dir / "logs"))
            env.update(d.env)
        child = subprocess.Popen(args.command, env=env)
        # SIGTERM (e.g. from `timeout`) is passed on; Ctrl-C already reaches the child directly.
        signal.signal(signal.SIGTERM, lambda signum, _: child.send_signal(signum))
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue  # let the child finish its own Ctrl-C handling, then stop the services
    finally:
        for running in reversed(started):
            running.stop()


def cmd_serve(args) -> int:
    decision = stack.load(args.dir / "stack.json").get(args.service)
    if decision is None or decision.source != "local":
        sys.exit(f"devstack serve: {args.service} is not a local service in {args.dir}/stack.json; "
                 "run `python -m devstack up` first")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # honcho sends SIGTERM to the whole process group
        signal.signal(sig, lambda *_: stop.set())
    running = stack.start_local(decision, capture_log=False)
    print(f"devstack: {args.service} ready at {running.endpoint}", flush=True)
    while not stop.is_set() and running.alive():
        stop.wait(0.5)
    code = running.stop(timeout=SERVE_STOP_TIMEOUT)
    if stop.is_set():
        if code == -signal.SIGKILL:
            print(f"devstack: {args.service} did not stop in {SERVE_STOP_TIMEOUT:.0f}s: killed", flush=True)
        return 0
    # It died by itself: exit non-zero, so honcho stops the rest instead of running half a stack.
    print(f"devstack: {args.service} exited with {code}", file=sys.stderr)
    return code or 1


def cmd_guard(args) -> int:
    try:
        if not args.command:
            guard.check(args.dir)
            return 0
        guard.run_guarded(args.dir, args.port, args.command)  # returns only by raising
    except guard.StackRunning as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # no lock file, or the command could not be executed
        print(f"devstack guard: {exc.filename or args.command[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if args.command else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".local"), help="state folder (default .local)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up").set_defaults(fn=cmd_up)
    sub.add_parser("check").set_defaults(fn=cmd_check)
    p = sub.add_parser("exec")
    p.add_argument("--services", default=",".join(stack.SERVICES),
                   type=lambda s: [x for x in s.split(",") if x], help="comma-separated (default all)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_exec)
    p = sub.add_parser("serve")
    p.add_argument("service", choices=stack.SERVICES)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("howto")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    p.set_defaults(fn=lambda a: howto.print_howto(a.port))
    sub.add_parser("key").set_defaults(fn=lambda a: howto.dev_key(a.dir))
    p = sub.add_parser("guard")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)),
                   help="the API port, recorded for the refusal message")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_guard)
    p = sub.add_parser("portrait")
    p.add_argument("path", type=Path, nargs="?", default=Path("portrait.png"))
    p.set_defaults(fn=lambda a: howto.write_portrait(a.path))
    args = parser.parse_args(argv)
    args.dir = args.dir.resolve()
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    if getattr(args, "services", None):
        unknown = set(args.services) - set(stack.SERVICES)
        if unknown:
            parser.error(f"unknown services: {', '.join(sorted(unknown))}")
    return args.fn(args)
