"""Certificates made by the test itself (with the openssl command), and a TLS front end."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from .broker_support import TcpProxy


@dataclass(frozen=True)
class TestCertificates:
    """A private CA and a server certificate it signed for localhost and 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> TestCertificates:
    """Make a CA and a server certificate in `folder` (valid for two days)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed: apt-get install openssl")
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=caterva2-test-ca"),
    )
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key"),
        *("-out", "server.csr", "-subj", "/CN=localhost"),
    )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext"),
    )
    return TestCertificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")


class TlsProxy(TcpProxy):
    """An https (or any TLS) front end: decrypts and forwards to a plain TCP server."""

    def __init__(self, host: str, port: int, certs: TestCertificates) -> None:
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(certs.cert, certs.key)
        super().__init__(host, port)

    def _forward(self, client: socket.socket) -> None:
        # The handshake in a thread of its own: a slow client must not hold up the others.
        threading.Thread(target=self._handshake, args=(client,), daemon=True).start()

    def _handshake(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = self._tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()  # a client that does not trust us hangs up in the handshake
            return
        client.settimeout(None)
        super()._forward(client)
