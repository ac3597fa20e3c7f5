"""Plain-HTTP helpers for the wire-contract tests (no Caterva2 client involved)."""

from __future__ import annotations

import uuid

import httpx


def login(urlbase: str, email: str, password: str) -> httpx.Client:
    """An httpx client carrying the `c2subauth` cookie of a fresh login."""
    client = httpx.Client(base_url=urlbase, timeout=30)
    resp = client.post("/auth/jwt/login", data={"username": email, "password": password})
    assert resp.status_code == 204, resp.text
    return client


def anonymous(urlbase: str) -> httpx.Client:
    return httpx.Client(base_url=urlbase, timeout=30)


def unique(name: str = "t") -> str:
    """A name no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"
