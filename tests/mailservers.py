"""Real mail servers for the email tests: Dovecot (IMAP) and aiosmtpd (SMTP), on loopback.

The servers themselves are in syncd/sandbox/mail.py, which `syncd demo` uses too; this
module holds the pytest fixtures over them and what only tests need: a TLS-enabled Dovecot
with a self-signed certificate, and [[sources]] tables for config files. One plain Dovecot
serves the whole session, and every test gets a fresh account on it.

A machine without Dovecot skips these tests with the reason and how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.sandbox import mail
from syncd.sandbox.mail import (
    Dovecot,
    Mailbox,
    MailServerUnavailable,
    SmtpServer,
    compose,
    free_port,
    running_smtp,
)

__all__ = [
    "DOVECOT_PASSWORD",
    "Certificate",
    "Dovecot",
    "Mailbox",
    "SmtpServer",
    "TlsDovecot",
    "compose",
    "dovecot_fixture",
    "email_source",
    "free_port",
    "mailbox_fixture",
    "running_smtp",
    "self_signed",
    "smtp_fixture",
    "start_dovecot",
    "tls_config",
    "tls_dovecot_fixture",
]

DOVECOT_PASSWORD = "dovecot-test-password-7f3a"  # a loopback test server's only credential


def start_dovecot(extra_config: str = "", files: Sequence[Path] = ()) -> Dovecot:
    """mail.start_dovecot with the tests' password; skips the test without Dovecot."""
    try:
        return mail.start_dovecot(extra_config, files, password=DOVECOT_PASSWORD)
    except MailServerUnavailable as exc:
        pytest.skip(f"the email tests need a real IMAP server: {exc}")


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for "localhost" and 127.0.0.1. Clients trust it when
    SSL_CERT_FILE points at `cert` (OpenSSL's default verify paths honour it)."""

    cert: Path
    key: Path


def self_signed(directory: Path) -> Certificate:
    if shutil.which("openssl") is None:
        pytest.skip("the TLS tests need the openssl command to make a certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Certificate(cert, key)


def tls_config(certificate: Certificate, imaps_port: int) -> str:
    """Extra Dovecot config: STARTTLS on the IMAP port, implicit TLS on `imaps_port`."""
    return f"""\
ssl = yes
ssl_cert = <{certificate.cert}
ssl_key = <{certificate.key}
service imap-login {{
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
"""


# Fixtures are declared under their own names and imported by the test modules as
# `*_fixture`, so a test's parameter never shadows an imported name.
@pytest.fixture(scope="session", name="dovecot")
def dovecot_fixture() -> Iterator[Dovecot]:
    server = start_dovecot()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class TlsDovecot:
    server: Dovecot  # STARTTLS on server.port
    imaps_port: int  # implicit TLS
    certificate: Certificate


@pytest.fixture(scope="module", name="tls_dovecot")
def tls_dovecot_fixture() -> Iterator[TlsDovecot]:
    """A Dovecot with TLS, its certificate self-signed for localhost."""
    directory = Path(tempfile.mkdtemp(prefix="syncd-tls-"))
    directory.chmod(0o755)  # Dovecot, as its own user, reads the certificate from here
    try:
        certificate = self_signed(directory)
        imaps_port = free_port()
        server = start_dovecot(
            tls_config(certificate, imaps_port), files=[certificate.cert, certificate.key]
        )
        try:
            yield TlsDovecot(server, imaps_port, certificate)
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(name="mailbox")
def mailbox_fixture(dovecot: Dovecot) -> Mailbox:
    """A fresh, empty account on the session's Dovecot."""
    return dovecot.mailbox()


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


def email_source(
    name: str,
    mailbox: Mailbox,
    smtp: SmtpServer,
    *,
    password_env: str,
    folders: Sequence[str] = ("INBOX",),
    interval: str = "1s",
    extra: str = "",
) -> str:
    """A [[sources]] table of type email for a config file."""
    folder_list = ", ".join(f'"{f}"' for f in folders)
    return f"""
[[sources]]
name = "{name}"
type = "email"
address = "support@example.com"
interval = "{interval}"
{extra}
[sources.imap]
host = "{mailbox.server.host}"
port = {mailbox.server.port}
tls = "plain"
user = "{mailbox.user}"
password = {{ env = "{password_env}" }}
folders = [{folder_list}]

[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
tls = "plain"
from_address = "syncd@example.com"
"""
