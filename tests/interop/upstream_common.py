"""What the upstream driver's sections share: the report, expectations, helpers.

Imported by `upstream_driver.py` and `upstream_writes.py` from their own folder
(they run as scripts under the upstream venv's python, never as our package).
"""

from __future__ import annotations

import ast
import contextlib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

PUBLIC = "@public"
DATA_SUFFIXES = {".b2nd", ".b2frame", ".h5", ".md"}


class Report:
    """Collect the outcome of named checks."""

    def __init__(self) -> None:
        """Start with no results."""
        self.checks: list[dict[str, Any]] = []
        self.section = ""

    def run(self, name: str, func: Callable[[], str | None]) -> None:
        """Run one check; record ok/detail (the exception text on failure)."""
        try:
            detail = func() or ""
            self.checks.append(
                {"section": self.section, "name": name, "ok": True, "detail": detail}
            )
        except Exception as exc:  # every failure is a result, never a crash
            tb = traceback.format_exc(limit=4)
            body = ""
            if isinstance(exc, httpx.HTTPStatusError):
                with contextlib.suppress(Exception):
                    body = f"\nresponse body: {exc.response.text[:500]}"
            detail = f"{type(exc).__name__}: {exc}{body}\n{tb}"
            self.checks.append(
                {"section": self.section, "name": name, "ok": False, "detail": detail}
            )


def expect(cond: Any, msg: str) -> None:
    """Raise AssertionError(msg) unless cond holds."""
    if not cond:
        raise AssertionError(msg)


def expect_http_error(func: Callable[[], Any], phrase: str) -> str:
    """Call func and require an httpx.HTTPStatusError whose text mentions phrase."""
    try:
        result = func()
    except httpx.HTTPStatusError as exc:
        expect(phrase in str(exc), f"expected {phrase!r} in error, got: {exc}")
        return str(exc).splitlines()[0]
    raise AssertionError(f"expected an HTTP error with {phrase!r}, got result {result!r}")


def parse_dtype(text: str) -> np.dtype:
    """Parse a dtype string as the upstream client would (plain, then Python literal)."""
    try:
        return np.dtype(text)
    except TypeError:
        return np.dtype(ast.literal_eval(text))


def example_files(examples: Path) -> list[str]:
    """Return the relative POSIX paths of the example datasets (no scripts)."""
    return sorted(
        p.relative_to(examples).as_posix()
        for p in examples.rglob("*")
        if p.is_file() and p.suffix in DATA_SUFFIXES and "__pycache__" not in p.parts
    )


def local_vlmeta(obj: Any) -> dict[str, Any]:
    """Return the vlmeta of a local SChunk with str keys."""
    raw = obj.vlmeta.getall()
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def split_auth(text: str | None) -> tuple[str, str] | None:
    """Split ``user:password`` into a tuple (None stays None)."""
    if not text:
        return None
    user, _, password = text.partition(":")
    return user, password
