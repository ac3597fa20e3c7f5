"""Broker URL resolution, connection parameters and reconnect backoff."""

from __future__ import annotations

import logging
import os
import random
import ssl
import tomllib
import urllib.parse
from pathlib import Path

import pika

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
URL_ENV = "CATERVA2_BROKER_URL"
CA_ENV = "CATERVA2_BROKER_CA"
"""A PEM file of the CAs that sign the broker's certificate (for amqps:// URLs)."""
CONFIG_FILE = "caterva2.toml"

HEARTBEAT = 30
"""Seconds; both ends drop a peer silent for about twice this."""
BLOCKED_TIMEOUT = 60
"""Seconds the broker may block us (resource alarm) before we drop and reconnect."""


class BrokerConfigError(Exception):
    """Raised when the broker URL cannot be found or is invalid."""


def resolve_url(url: str | None = None, config: str | os.PathLike | None = None) -> str:
    """Return the broker URL: url, else $CATERVA2_BROKER_URL, else caterva2.toml, else default."""
    if url:
        return url
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    path = Path(config) if config is not None else Path(CONFIG_FILE)
    if path.is_file():
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BrokerConfigError(f"cannot read {path}: {exc}") from exc
        configured = data.get("broker", {}).get("url")
        if configured:
            if not isinstance(configured, str):
                raise BrokerConfigError(f"{path}: [broker] url must be a string")
            return configured
    elif config is not None:
        raise BrokerConfigError(f"config file not found: {path}")
    return DEFAULT_URL


def use_ca_file(config: dict) -> None:
    """Take `[broker] ca_file` of a loaded configuration, unless $CATERVA2_BROKER_CA is set."""
    ca_file = config.get("broker", {}).get("ca_file")
    if ca_file and not os.environ.get(CA_ENV):
        if not Path(ca_file).is_file():
            raise BrokerConfigError(f"[broker] ca_file not found: {ca_file}")
        os.environ[CA_ENV] = str(ca_file)


def tls_options(host: str) -> pika.SSLOptions:
    """TLS to the broker: the certificate is checked against the system's CAs, or
    $CATERVA2_BROKER_CA's, and must name `host`."""
    ca_file = os.environ.get(CA_ENV) or None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerConfigError(f"cannot use {CA_ENV}={ca_file}: {exc}") from exc
    return pika.SSLOptions(context, server_hostname=host)


def parameters(url: str, name: str = "caterva2") -> pika.URLParameters:
    """Return pika parameters for url, with heartbeats on unless the URL sets them."""
    if not url.startswith(("amqp://", "amqps://")):
        raise BrokerConfigError(f"broker URL must start with amqp:// or amqps://: {redact(url)}")
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises ValueError and others for bad query options
        raise BrokerConfigError(f"invalid broker URL {redact(url)}: {exc}") from exc
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if url.startswith("amqps://") and "ssl_options" not in query:
        # pika's own default for amqps checks no host name: ours does.
        params.ssl_options = tls_options(params.host)
    if "heartbeat" not in query:
        params.heartbeat = HEARTBEAT
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = BLOCKED_TIMEOUT
    if "connection_attempts" not in query:
        # Our own loops retry with backoff; pika's retries would only hide that.
        params.connection_attempts = 1
    if "socket_timeout" not in query:
        params.socket_timeout = 5
    # Shown in the management UI, so operators see who holds each connection.
    params.client_properties = {"connection_name": name}
    return params


def redact(url: str) -> str:
    """Return url with its password hidden, for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def describe(exc: BaseException) -> str:
    """Return a readable one-line reason for a pika error, whose str() is often empty."""
    # pika nests the real cause (e.g. ConnectionRefusedError) a few wrappers deep.
    inner = getattr(exc, "exception", None)
    if inner is None and getattr(exc, "exceptions", None):
        inner = exc.exceptions[-1]
    if inner is None:
        inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
    if isinstance(inner, BaseException) and inner is not exc:
        return describe(inner)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def quiet_pika_logs() -> None:
    """Silence pika's own logging; our clients log each failure once, in one line."""
    # pika logs every failed connection attempt at ERROR with a traceback.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


class Backoff:
    """Exponential backoff with jitter: initial, 2*initial, ... capped at maximum."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        """Set the first delay, the cap and the growth factor (seconds)."""
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        """Return the delay to wait before the next attempt, and grow it."""
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        # Jitter so many clients cut off by one broker restart do not reconnect in lockstep.
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        """Start again from the initial delay, after a successful connection."""
        self._next = self.initial
