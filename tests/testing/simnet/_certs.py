"""A certificate for TLS on simulated hosts, made with the openssl command
(RSA: its signatures, and so the handshake's sizes, are the same in every
run, which keeps simulated runs identical)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest


def make_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for the names server and api.example;
    skips the test when the openssl command is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not available")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=server",
         "-addext", "subjectAltName=DNS:server,DNS:api.example"],
        check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
