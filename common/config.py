"""Configuration: `caterva2.toml`, command-line overrides and the environment."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_CONF = "caterva2.toml"
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


def load_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read the TOML file (`caterva2.toml` in the cwd by default); missing = empty."""
    explicit = path is not None
    conf_path = Path(path if explicit else DEFAULT_CONF)
    if not conf_path.exists():
        if explicit:
            raise ConfigError(f"configuration file not found: {conf_path}")
        return {}
    try:
        with conf_path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {conf_path}: {exc}") from exc


def section(conf: dict[str, Any], name: str, ident: str | None = None) -> dict[str, Any]:
    """The `[name]` section, overlaid with `[name.<ident>]` when an id is given."""
    base = {k: v for k, v in conf.get(name, {}).items() if not isinstance(v, dict)}
    if ident:
        specific = conf.get(name, {}).get(ident)
        if specific is None:
            raise ConfigError(f"no [{name}.{ident}] section in the configuration")
        base.update(specific)
    return base


def parse_size(value: str | int | float | None) -> int | None:
    """Parse a size such as `10G`, `1.5m` or `2048` into bytes (powers of 1024)."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in SIZE_UNITS else ""
    number = text[: len(text) - len(unit)].strip()
    try:
        size = float(number) * SIZE_UNITS[unit]
    except ValueError:
        raise ConfigError(f"invalid size {value!r} (use e.g. 500M or 10G)") from None
    if size < 0:
        raise ConfigError(f"invalid size {value!r}: must not be negative")
    return int(size)


def parse_http(value: str) -> tuple[str, int] | str:
    """`host:port` (IPv6 in brackets allowed) → (host, port); no colon → a Unix socket."""
    if ":" not in value:
        return value
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "localhost"
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"invalid HTTP address {value!r} (use HOST:PORT)") from None


def load_dotenv(path: str | os.PathLike = ".env") -> None:
    """Load `KEY=VALUE` lines from a `.env` file into the environment (never overriding)."""
    env_path = Path(path)
    if not env_path.is_file():
        return
    for line in env_path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def secret_from_env() -> str | None:
    """The token secret: `CATERVA2_SECRET` (also read from `.env`), else the file named
    by `CATERVA2_SECRET_FILE` (a container's secret: the bare value, or a `.env` file).

    The file lets docker-compose hand the secret over without ever holding it in
    the service's environment, which `docker-compose config` would print.
    """
    load_dotenv()
    secret = os.environ.get("CATERVA2_SECRET")
    path = os.environ.get("CATERVA2_SECRET_FILE")
    if secret or not path:
        return secret or None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"CATERVA2_SECRET_FILE {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "CATERVA2_SECRET":
            return value.strip().strip("'\"") or None
    return None if "=" in text else (text.strip() or None)
