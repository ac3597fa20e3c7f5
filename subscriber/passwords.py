"""Password hashing with scrypt, a slow, memory-hard KDF from the standard library."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import string

# 2**15 × 8 × 128 bytes = 32 MiB and ~50 ms per hash: slow for attackers, fine for logins.
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 15, 8, 1
MIN_PASSWORD_LENGTH = 8


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=32
    )


def hash_password(password: str) -> str:
    """A PHC-style string `$scrypt$ln=..,r=..,p=..$<salt>$<hash>`."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
    params = f"ln={SCRYPT_LOG_N},r={SCRYPT_R},p={SCRYPT_P}"
    return f"$scrypt${params}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` matches a string made by `hash_password`."""
    try:
        _, scheme, params, salt, digest = hashed.split("$")
        values = dict(item.split("=") for item in params.split(","))
        if scheme != "scrypt":
            return False
        actual = _scrypt(
            password, _unb64(salt), int(values["ln"]), int(values["r"]), int(values["p"])
        )
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


@functools.cache
def decoy_hash() -> str:
    """A hash no password is known for, checked when an account does not exist.

    Made once, with the current parameters: checking it costs what checking a real
    account's password costs, and nothing more.
    """
    return hash_password(secrets.token_urlsafe(16))


def random_password(length: int = 8) -> str:
    """Random letters, as the original generates for users added without a password."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(length))


def password_problem(password: str) -> str | None:
    """Why a password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password should be at least {MIN_PASSWORD_LENGTH} characters"
    return None
