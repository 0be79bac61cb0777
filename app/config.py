"""Settings read once from the environment: the only reader of os.environ."""
from __future__ import annotations

import ipaddress
import re
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict
from urllib.parse import parse_qs, urlsplit

import limits
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.auth.keyring import load_jwks_file

DEFAULT_DATABASE_URL = "sqlite:///./scoreboard.db"
ACTION_ITEM = re.compile(r"^([A-Za-z0-9_.:-]{1,32})=(-?\d{1,10})$")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Descriptors kept for everything but streams: listening sockets, database and Redis pools,
# files, requests in flight.
RESERVED_FILES = 500


class ConfigError(Exception):
    """A bad environment value; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    redis_prefix: str = "scoreboard:"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str = "scoreboard"
    jwt_issuer: str | None = None
    jwt_jwks_file: str | None = None
    jwt_jwks_url: str | None = None
    jwks_refresh: float = 300.0
    jwks_cooldown: float = 10.0
    anomaly_points_per_hour: int | None = None
    anomaly_block: bool = False
    cors_origins: tuple[str, ...] = ()
    stream_max_per_client: int = 20
    actions: Mapping[str, int] = field(default_factory=lambda: {"complete": 10})
    rate_limit_user: str = "60/minute"
    rate_limit_caller: str = "6000/minute"
    auto_migrate: bool = True
    push_interval: float = 0.25
    ping_interval: float = 15.0
    db_timeout: float = 10.0
    send_timeout: float = 15.0
    stream_max: int = 5000
    trusted_proxies: tuple[IPNetwork, ...] = ()
    open_files: int = 0  # the soft RLIMIT_NOFILE after start raised it (0: not read)
    reconcile_interval: float = 2.0  # a pass reads only what changed: cheap enough to run often
    batch_window: float = 0.001  # group commit: how long increments wait for others to share a transaction
    batch_max: int = 128  # ... and how many share one at most
    log_format: str | None = None  # None: text on a terminal, JSON otherwise
    shutdown_timeout: float = 10.0
    web_concurrency: int = 1
    prometheus_multiproc_dir: str | None = None

    @property
    def default_action(self) -> str:
        return next(iter(self.actions))

    @property
    def jwt_algorithm(self) -> str:
        if self.jwt_public_key is None:
            return "HS256"
        return _public_key_algorithm(self.jwt_public_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from `environ`; raise ConfigError naming the first bad variable."""
        get = environ.get
        settings = cls(
            host=get("HOST", cls.host),
            port=_integer(environ, "PORT", cls.port, 0, 65535),
            database_url=_database_url(get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            redis_url=_redis_url(get("REDIS_URL") or None),
            redis_prefix=get("REDIS_PREFIX", cls.redis_prefix),
            jwt_secret=get("JWT_SECRET") or None,
            jwt_public_key=get("JWT_PUBLIC_KEY") or None,
            jwt_audience=get("JWT_AUDIENCE") or cls.jwt_audience,
            jwt_issuer=get("JWT_ISSUER") or None,
            **_security(environ),
            actions=_actions(get("SCORE_ACTIONS", "complete=10")),
            rate_limit_user=_rate(environ, "RATE_LIMIT_USER", cls.rate_limit_user),
            rate_limit_caller=_rate(environ, "RATE_LIMIT_CALLER", cls.rate_limit_caller),
            auto_migrate=get("AUTO_MIGRATE", "1") != "0",
            push_interval=_seconds(environ, "PUSH_INTERVAL", cls.push_interval),
            ping_interval=_seconds(environ, "PING_INTERVAL", cls.ping_interval),
            db_timeout=_seconds(environ, "DB_TIMEOUT", cls.db_timeout),
            send_timeout=_seconds(environ, "SEND_TIMEOUT", cls.send_timeout),
            **_streams(environ, raise_open_files_limit()),
            reconcile_interval=_seconds(environ, "RECONCILE_INTERVAL", cls.reconcile_interval),
            batch_window=_seconds(environ, "BATCH_WINDOW", cls.batch_window),
            batch_max=_integer(environ, "BATCH_MAX", cls.batch_max, 1, 1000),
            **_operations(environ),
        )
        if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < 32:
            raise ConfigError("JWT_SECRET: use at least 32 bytes (HS256 needs a key as long as its hash)")
        if settings.web_concurrency > 1 and (settings.redis_url is None or settings.database_url.startswith("sqlite")):
            raise ConfigError("WEB_CONCURRENCY: more than 1 worker needs PostgreSQL (DATABASE_URL) and Redis "
                              "(REDIS_URL); the embedded store and in-process bus serve one process only")
        if settings.jwt_public_key is not None:
            try:
                _public_key_algorithm(settings.jwt_public_key)
            except ValueError as exc:
                raise ConfigError(f"JWT_PUBLIC_KEY: {exc}") from None
        return settings


def _public_key_algorithm(pem: str) -> str:
    """The one algorithm a public key verifies: pinned, so a token cannot pick another."""
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError("key type must be RSA, EC P-256 or Ed25519")


def _database_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres", "sqlite"):
        raise ConfigError(f"DATABASE_URL: unknown scheme {parts.scheme!r} (use postgresql:// or sqlite:///)")
    if parts.scheme == "sqlite" and not parts.path.lstrip("/"):
        raise ConfigError("DATABASE_URL: sqlite:/// needs a file path")
    schema = parse_qs(parts.query).get("schema", ["public"])[0]
    if not SCHEMA_NAME.match(schema):
        raise ConfigError(f"DATABASE_URL: schema {schema!r} is not a plain lower-case identifier")
    return url


def _redis_url(url: str | None) -> str | None:
    if url is not None and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL: unknown scheme {urlsplit(url).scheme!r} (use redis://)")
    return url


def _actions(text: str) -> dict[str, int]:
    actions: dict[str, int] = {}
    for item in text.split(","):
        match = ACTION_ITEM.match(item.strip())
        if match is None or match[1] in actions:
            raise ConfigError(f"SCORE_ACTIONS: {item.strip()!r} is not a new name=points (e.g. complete=10)")
        actions[match[1]] = int(match[2])
    return actions


def _rate(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, default)
    try:
        limits.parse(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a rate such as 60/minute") from None
    return value


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = environ.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ConfigError(f"{name}: {value!r} is not an integer in {low}..{high}")
    return int(value)


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ConfigError(f"{name}: {value!r} is not a number of seconds in (0, 3600]")
    return seconds


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each stream holds a socket); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit we have; STREAM_MAX is sized from it
    return soft


class _StreamSettings(TypedDict):
    stream_max: int
    trusted_proxies: tuple[IPNetwork, ...]
    open_files: int


def _streams(environ: Mapping[str, str], open_files: int) -> _StreamSettings:
    """STREAM_MAX defaults to what the open-files limit allows; more than that is refused."""
    allowed = max(open_files - RESERVED_FILES, 1)
    stream_max = _integer(environ, "STREAM_MAX", allowed, 1, allowed)
    return {"stream_max": stream_max, "open_files": open_files,
            "trusted_proxies": _networks(environ.get("TRUSTED_PROXIES", ""))}


def _networks(text: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise ConfigError(f"TRUSTED_PROXIES: {exc} (a comma list of addresses or CIDR networks)") from None


class _SecuritySettings(TypedDict):
    jwt_jwks_file: str | None
    jwt_jwks_url: str | None
    jwks_refresh: float
    jwks_cooldown: float
    anomaly_points_per_hour: int | None
    anomaly_block: bool
    cors_origins: tuple[str, ...]
    stream_max_per_client: int


def _security(environ: Mapping[str, str]) -> _SecuritySettings:
    """Key rotation, anomaly flags, CORS and the per-client stream cap."""
    return {
        "jwt_jwks_file": _jwks_file(environ.get("JWT_JWKS_FILE") or None),
        "jwt_jwks_url": _jwks_url(environ),
        "jwks_refresh": _seconds(environ, "JWT_JWKS_REFRESH", Settings.jwks_refresh),
        "jwks_cooldown": _seconds(environ, "JWT_JWKS_COOLDOWN", Settings.jwks_cooldown),
        "anomaly_points_per_hour": _optional_integer(environ, "ANOMALY_POINTS_PER_HOUR", 1, 10**15),
        "anomaly_block": _anomaly_block(environ.get("ANOMALY_ACTION", "flag")),
        "cors_origins": _origins(environ.get("CORS_ORIGINS", "")),
        "stream_max_per_client": _integer(
            environ, "STREAM_MAX_PER_CLIENT", Settings.stream_max_per_client, 1, 100_000),
    }


class _OperationsSettings(TypedDict):
    log_format: str | None
    shutdown_timeout: float
    web_concurrency: int
    prometheus_multiproc_dir: str | None


def _operations(environ: Mapping[str, str]) -> _OperationsSettings:
    """Logs, shutdown, worker processes and where they share their metrics."""
    log_format = environ.get("LOG_FORMAT") or None
    if log_format not in ("json", "text", None):
        raise ConfigError(f"LOG_FORMAT: {log_format!r} is not json or text")
    return {
        "log_format": log_format,
        "shutdown_timeout": _seconds(environ, "SHUTDOWN_TIMEOUT", Settings.shutdown_timeout),
        "web_concurrency": _integer(environ, "WEB_CONCURRENCY", Settings.web_concurrency, 1, 256),
        "prometheus_multiproc_dir": environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
    }


def _jwks_file(path: str | None) -> str | None:
    if path is not None:
        try:
            load_jwks_file(path)
        except ValueError as exc:
            raise ConfigError(f"JWT_JWKS_FILE: {exc}") from None
    return path


def _jwks_url(environ: Mapping[str, str]) -> str | None:
    url = environ.get("JWT_JWKS_URL") or None
    if url is None:
        return None
    if environ.get("JWT_JWKS_FILE"):
        raise ConfigError("JWT_JWKS_URL: set JWT_JWKS_FILE or JWT_JWKS_URL, not both")
    parts = urlsplit(url)
    # Keys fetched in the clear could be swapped on the way: plain http only on this host.
    loopback = parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not (parts.scheme == "https" and parts.hostname) and not loopback:
        raise ConfigError(f"JWT_JWKS_URL: {url!r} is not an https:// URL (http only for localhost)")
    return url


def _anomaly_block(action: str) -> bool:
    if action not in ("flag", "block"):
        raise ConfigError(f"ANOMALY_ACTION: {action!r} is not flag or block")
    return action == "block"


def _origins(text: str) -> tuple[str, ...]:
    """Exact origins to reflect; no wildcard, since writes carry a bearer token."""
    origins = tuple(item.strip().lower() for item in text.split(",") if item.strip())
    for origin in origins:
        if not ORIGIN.match(origin):
            raise ConfigError(f"CORS_ORIGINS: {origin!r} is not an origin such as https://app.example.com")
    return origins


def _optional_integer(environ: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    if not environ.get(name):
        return None
    return _integer(environ, name, low, low, high)
