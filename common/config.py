"""Configuration: `caterva2.toml`, command-line overrides and the environment."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_CONF = "caterva2.toml"
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


log = logging.getLogger(__name__)


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


class ReadKeys(dict):
    """A configuration section that remembers which keys its reader asked for.

    What was never asked for is unknown to the reader (a typo, or a setting of
    another version): `warn_unknown` names it, instead of ignoring it silently.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def unknown(self, also_known: tuple[str, ...] = ()) -> list[str]:
        """The keys present that nobody asked for, nor `also_known` (other programs' keys)."""
        return sorted(set(self) - self.asked - set(also_known))


def warn_unknown(values: ReadKeys, where: str, also_known: tuple[str, ...] = ()) -> list[str]:
    """Log a warning for each unknown key of a section; return them."""
    unknown = values.unknown(also_known)
    for key in unknown:
        log.warning("unknown setting %r in [%s] (ignored)", key, where)
    return unknown


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
