"""Logging set-up shared by the daemons and command-line tools."""

import logging


def setup_logging(level: str | None = "warning") -> None:
    """Configure the root logger once, at the given level name."""
    name = (level or "warning").upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(
        level=name, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
