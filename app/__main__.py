"""Command line: serve (default) | migrate | token | demo. Argument parsing only."""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from dataclasses import replace

from aiohttp import web

from app.auth.tokens import mint_token
from app.config import ConfigError, Settings
from app.ops import logs
from app.ops.heap import tuned_for_serving
from app.store.migrations import migrate
from app.tools import demo
from app.web import create_app

log = logging.getLogger("app")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format)
    if args.command == "migrate":
        applied = migrate(settings.database_url)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")
    elif args.command == "token":
        if not settings.jwt_secret:
            print("configuration error: JWT_SECRET: set it to mint a token", file=sys.stderr)
            return 2
        print(mint_token(settings, args.sub, args.scope, args.ttl))
    elif args.command == "demo":
        return demo.run(settings, args)
    else:
        serve(settings)
    return 0


def serve(settings: Settings) -> None:
    """One process; SIGTERM stops listening, ends streams, lets requests finish within SHUTDOWN_TIMEOUT."""
    if settings.web_concurrency > 1:
        log.warning("WEB_CONCURRENCY=%d: python -m app serves one process; the Procfile's gunicorn runs workers",
                    settings.web_concurrency)
    web.run_app(tuned_for_serving(create_app(_with_secret(settings))), host=settings.host, port=settings.port,
                shutdown_timeout=settings.shutdown_timeout, access_log=None)


def _with_secret(settings: Settings) -> Settings:
    """Without any key configured, a dev-only secret for this process, said loudly."""
    if settings.jwt_secret or settings.jwt_public_key or settings.jwt_jwks_file or settings.jwt_jwks_url:
        return settings
    secret = secrets.token_urlsafe(32)
    log.warning("JWT_SECRET is not set: using a dev-only secret for this run: JWT_SECRET=%s", secret)
    return replace(settings, jwt_secret=secret)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Live scoreboard service")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP server (default)")
    commands.add_parser("migrate", help="apply the SQL migrations in sql/")
    token = commands.add_parser("token", help="print an HS256 token signed with JWT_SECRET")
    token.add_argument("--sub", required=True, help="the caller's identity")
    token.add_argument("--scope", default="scores:write", help='space-separated, e.g. "scores:write users:write"')
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    demo.add_arguments(commands.add_parser("demo", help="simulated backends scoring players on a running server"))
    return parser


if __name__ == "__main__":
    sys.exit(main())
