"""The subscriber's settings: `[subscriber]` of `caterva2.toml`, overridden by flags."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..common.config import (
    ConfigError,
    ReadKeys,
    parse_http,
    parse_size,
    secret_from_env,
    warn_unknown,
)
from ..common.connection_limits import ConnectionLimits
from ..common.errors import BadRequest
from ..common.paths import check_root_name
from .login_throttle import ThrottleLimits

DEFAULT_STATEDIR = "_caterva2/sub"
DEFAULT_HTTP = "localhost:8000"
# `[subscriber]` keys of other programs: cat2cli's `url` (the subscriber it talks to).
CLIENT_KEYS = ("url",)
DEFAULT_URLBASE = "http://localhost:8000"


@dataclass
class SubscriberSettings:
    """Everything `cat2sub` needs to run."""

    statedir: Path = Path(DEFAULT_STATEDIR)
    http: str = DEFAULT_HTTP
    urlbase: str = DEFAULT_URLBASE
    quota: int | None = None
    cache_size: int | None = None
    """Byte budget of the chunk cache (mirrored roots aside); None: no limit."""
    mirror_rate: float = 200.0
    mirror_bandwidth: int = 0
    """Bytes per second a mirror may fetch at most, e.g. "20M" (0: no limit)."""
    """Chunks per second fetched for mirrored roots (0: no limit)."""
    upstream: str | None = None
    """A parent subscriber's URL: chunk bytes are asked of it before the publisher (tiers)."""
    root_upstreams: dict[str, str | None] = field(default_factory=dict)
    """Root → the parent subscriber of its chunks, or None: its publisher (`[upstreams]`)."""
    cache_quotas: dict[str, int] = field(default_factory=dict)
    """Root name → bytes of its chunks the cache keeps at most (`[cache_quotas]`)."""
    maxusers: int | None = None
    login: bool = True
    register: bool = False
    loglevel: str = "warning"
    secret: str | None = None
    threads: int = 8
    broker_url: str | None = None
    subscriber_id: str | None = None
    publisher_ca_file: str | None = None
    """PEM file of the CAs that sign https publishers' certificates ($CATERVA2_PUBLISHER_CA)."""
    root_owners: dict[str, str] = field(default_factory=dict)
    """Root name → the broker user that owns it (`[root_owners]`); others are pinned."""
    # Seconds our broker queue outlives us while we are gone (0: forever); see README.
    queue_expiry: float = 7 * 24 * 3600.0
    silent_after: float = 30.0
    """Seconds without news of a followed root before its publisher is asked over HTTP."""
    # Per computing request (lazyexpr, concat, stack, append, reading expressions).
    compute_timeout: float = 60.0
    compute_max_size: int = 1024**3
    # Failed logins allowed per account and per client address in `login_window` seconds.
    login_failures_per_account: int = 10
    login_failures_per_client: int = 50
    login_window: float = 900.0
    # HTTP connections: in all, per client address (0: no limit), idle seconds before closing.
    max_connections: int = 1000
    max_connections_per_client: int = 64
    idle_timeout: int = 30
    # The reverse proxy's address: its X-Forwarded-* headers name the real client.
    trusted_proxy: str | None = None
    # `/api/load_from_url`: networks reachable although private/loopback (see README,
    # Security), the most bytes one load brings, seconds to connect and per read.
    load_from_url_hosts: list[str] = field(default_factory=list)
    load_from_url_max_size: int = 1024**3
    load_from_url_timeout: float = 30.0

    @property
    def url_prefix(self) -> str:
        """The path part of `urlbase`, where the app is mounted ('' for none)."""
        return urlsplit(self.urlbase).path.rstrip("/")

    @property
    def throttle_limits(self) -> ThrottleLimits:
        return ThrottleLimits(
            self.login_failures_per_account, self.login_failures_per_client, self.login_window
        )

    @property
    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            self.max_connections, self.max_connections_per_client, self.idle_timeout
        )

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies must say `Secure` (served over https)."""
        return self.urlbase.lower().startswith("https:")

    def check(self) -> None:
        """Refuse a configuration that cannot run, saying why."""
        if self.login and not self.secret:
            raise ConfigError(
                "CATERVA2_SECRET envvar is required when login is enabled "
                "(set it in the environment or in .env, or set login = false)"
            )
        if self.register and not self.login:
            raise ConfigError("register = true requires login = true")
        if self.maxusers is not None and self.maxusers < 0:
            raise ConfigError("maxusers must not be negative")
        if self.max_connections < 1 or self.idle_timeout < 1:
            raise ConfigError("max_connections and idle_timeout must be at least 1")
        for root, url in {"": self.upstream, **self.root_upstreams}.items():
            if url and url == self.urlbase:
                where = f"[upstreams] {root}" if root else "upstream"
                raise ConfigError(f"{where} is this subscriber itself (its urlbase)")
        if self.max_connections_per_client < 0:
            raise ConfigError("max_connections_per_client must not be negative (0: no limit)")


def _hosts(value: Any) -> list[str]:
    """`load_from_url_hosts`: a list of addresses or networks ("127.0.0.1", "10.0.0.0/8")."""
    import ipaddress

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError("load_from_url_hosts must be a list of addresses or networks")
    hosts = [str(item).strip() for item in items if str(item).strip()]
    for host in hosts:
        try:
            ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ConfigError(
                f"load_from_url_hosts: {host!r} is not an IP address or network"
            ) from None
    return hosts


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _seconds(value: Any, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from None
    if seconds < 0:
        raise ConfigError(f"{name} must not be negative (0 = never)")
    return seconds


def _rate(value: Any, name: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number per second, not {value!r}") from None
    if rate < 0 or rate != rate:
        raise ConfigError(f"{name} must not be negative (0 = no limit)")
    return rate


def _upstream(value: Any) -> str | None:
    if not value:
        return None
    url = str(value).rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"upstream must be an http(s) URL of a subscriber, not {value!r}")
    return url


def _urlbase_of(http: Any) -> str:
    """Where clients reach a subscriber listening on `http`, when no urlbase is configured."""
    if http is None:
        return DEFAULT_URLBASE
    address = parse_http(str(http))
    if isinstance(address, str):
        return DEFAULT_URLBASE  # a Unix socket: whatever proxies it decides
    host, port = address
    if host in ("0.0.0.0", "::"):  # every interface: this machine's own name for it
        host = "localhost"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _per_root(table: Any, name: str, what: str, value: Callable[[str, Any], Any]) -> dict:
    """Validate a `[name]` table of root name = `what`, each value checked by `value`."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table of root = {what}")
    checked = {}
    for root, item in table.items():
        try:
            check_root_name(root)
        except BadRequest as exc:
            raise ConfigError(f"[{name}]: {exc.detail}") from None
        checked[root] = value(root, item)
    return checked


def _owner(root: str, user: Any) -> str:
    if not isinstance(user, str) or not user:
        raise ConfigError(f"[root_owners]: the owner of {root!r} must be a broker user name")
    return user


def _quota(root: str, size: Any) -> int:
    try:
        quota = parse_size(size)
    except ConfigError as exc:
        raise ConfigError(f"[cache_quotas]: {root}: {exc}") from None
    if quota is None:
        raise ConfigError(f"[cache_quotas]: the quota of {root!r} must be a size above 0")
    return quota


def root_owners(table: Any) -> dict[str, str]:
    """Validate the `[root_owners]` table: root name = broker user name."""
    return _per_root(table, "root_owners", "broker user", _owner)


def root_upstreams(table: Any) -> dict[str, str | None]:
    """Validate the `[upstreams]` table: root name = a parent subscriber's URL ("": none)."""
    return _per_root(table, "upstreams", "URL of a subscriber", lambda _root, url: _upstream(url))


def cache_quotas(table: Any) -> dict[str, int]:
    """Validate the `[cache_quotas]` table: root name = size (e.g. "10G")."""
    return _per_root(table, "cache_quotas", "size", _quota)


def build_settings(conf: dict[str, Any], overrides: dict[str, Any]) -> SubscriberSettings:
    """Merge the `[subscriber]` section with command-line overrides (None = not given)."""
    values = ReadKeys({k: v for k, v in conf.items() if not isinstance(v, dict)})
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = SubscriberSettings(
        statedir=Path(values.get("statedir", DEFAULT_STATEDIR)),
        http=str(values.get("http", DEFAULT_HTTP)),
        urlbase=str(values.get("urlbase") or _urlbase_of(values.get("http"))).rstrip("/"),
        quota=parse_size(values.get("quota")),
        cache_size=parse_size(values.get("cache_size")),
        mirror_rate=_rate(values.get("mirror_rate", 200), "mirror_rate"),
        mirror_bandwidth=parse_size(values.get("mirror_bandwidth")) or 0,
        upstream=_upstream(values.get("upstream")),
        maxusers=int(values["maxusers"]) if values.get("maxusers") else None,
        login=_bool(values.get("login", True), "login"),
        register=_bool(values.get("register", False), "register"),
        loglevel=str(values.get("loglevel", "warning")),
        secret=secret_from_env(),
        threads=int(values.get("threads", 8)),
        subscriber_id=values.get("id"),
        queue_expiry=_seconds(values.get("queue_expiry", 7 * 24 * 3600), "queue_expiry"),
        silent_after=_seconds(values.get("silent_after", 30), "silent_after"),
        compute_timeout=float(values.get("compute_timeout", 60)),
        compute_max_size=parse_size(values.get("compute_max_size")) or 1024**3,
        publisher_ca_file=values.get("publisher_ca_file")
        or os.environ.get("CATERVA2_PUBLISHER_CA")
        or None,
        login_failures_per_account=int(values.get("login_failures_per_account", 10)),
        login_failures_per_client=int(values.get("login_failures_per_client", 50)),
        login_window=float(values.get("login_window", 900)),
        max_connections=int(values.get("max_connections", 1000)),
        max_connections_per_client=int(values.get("max_connections_per_client", 64)),
        idle_timeout=int(values.get("idle_timeout", 30)),
        trusted_proxy=str(values["trusted_proxy"]) if values.get("trusted_proxy") else None,
        load_from_url_hosts=_hosts(values.get("load_from_url_hosts", [])),
        load_from_url_max_size=parse_size(values.get("load_from_url_max_size")) or 1024**3,
        load_from_url_timeout=_seconds(
            values.get("load_from_url_timeout", 30), "load_from_url_timeout"
        ),
    )
    if settings.publisher_ca_file and not Path(settings.publisher_ca_file).is_file():
        raise ConfigError(f"publisher_ca_file not found: {settings.publisher_ca_file}")
    warn_unknown(values, "subscriber", also_known=CLIENT_KEYS)
    return settings
