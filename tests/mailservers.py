"""Real mail servers for the email tests: Dovecot (IMAP) and aiosmtpd (SMTP), on loopback.

Dovecot is Debian's `dovecot-imapd` (2.3), started with a minimal config written into a temp
dir: loopback only, a free port, no TLS, plaintext auth, a static passdb/userdb (any user
name logs in with the one password, so every test gets a mailbox of its own by using a
fresh user name), maildir under the temp dir, and its log in a file there. One server serves
the whole session; `stop` kills its process group, so no Dovecot process outlives the tests.

Dovecot refuses to run its login processes as root, so when the tests run as root (CI does)
the server runs as the unprivileged `dovecot` system user the package creates, in a temp dir
that user owns. Mail is delivered the way a mailbox receives it: IMAP APPEND, never by
writing maildir files.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import SMTP, compat32
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from imapclient import IMAPClient

DOVECOT_PACKAGE = "dovecot-imapd"
DOVECOT_PASSWORD = "dovecot-test-password-7f3a"  # a loopback test server's only credential
_START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dovecot_binary() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root PATH often lacks.
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


def _run_as() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("dovecot", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is no 'dovecot' or 'nobody' user to drop to")


def dovecot_config(root: Path, port: int, user: pwd.struct_passwd, extra: str = "") -> str:
    """The smallest config that serves IMAP on loopback, unprivileged, plus `extra`."""
    name, uid, gid = user.pw_name, user.pw_uid, user.pw_gid
    return f"""\
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
mail_location = maildir:{root}/mail/%u
default_internal_user = {name}
default_login_user = {name}
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = static
  args = password={DOVECOT_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
{extra}"""


@dataclass
class Dovecot:
    """A running Dovecot. `mailbox()` gives a fresh, empty account on it."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    password: str = DOVECOT_PASSWORD

    @property
    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def mailbox(self, user: str | None = None) -> Mailbox:
        return Mailbox(self, user or f"u{uuid.uuid4().hex[:12]}")

    def stop(self) -> None:
        # The master takes its children down on SIGTERM; whatever is left of the process
        # group after that is killed, so nothing outlives the session.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Mailbox:
    """One account on the Dovecot server, with the client side a person or MTA would use."""

    server: Dovecot
    user: str

    @property
    def password(self) -> str:
        return self.server.password

    @contextlib.contextmanager
    def client(self) -> Iterator[IMAPClient]:
        client = IMAPClient(self.server.host, self.server.port, ssl=False, timeout=10)
        try:
            client.login(self.user, self.server.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()
            with contextlib.suppress(Exception):
                client.shutdown()

    def create_folder(self, folder: str) -> None:
        with self.client() as c:
            c.create_folder(folder)

    def deliver(self, raw: bytes, folder: str = "INBOX", flags: Sequence[str] = ()) -> int:
        """APPEND one message, the way an MDA or a mail client files it; returns its UID."""
        with self.client() as c:
            response = c.append(folder, raw, flags=[f.encode() for f in flags])
        # Dovecot answers with UIDPLUS: "[APPENDUID <uidvalidity> <uid>] Append completed."
        text = response.decode() if isinstance(response, bytes) else str(response)
        return int(text.split("APPENDUID ", 1)[1].split("]", 1)[0].split()[1])

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return sorted(int(u) for u in c.search("ALL"))

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return {}
            got = c.get_flags(uids)
        return {int(u): {f.decode().lower() for f in fl} for u, fl in got.items()}

    def tag(
        self, uid: int, add: Sequence[str] = (), remove: Sequence[str] = (), folder: str = "INBOX"
    ) -> None:
        """Set or clear keywords on one message, as Thunderbird does when a tag is toggled."""
        with self.client() as c:
            c.select_folder(folder)
            if add:
                c.add_flags([uid], [a.encode() for a in add], silent=True)
            if remove:
                c.remove_flags([uid], [r.encode() for r in remove], silent=True)

    def expunge(self, uid: int, folder: str = "INBOX") -> None:
        with self.client() as c:
            c.select_folder(folder)
            c.delete_messages([uid])
            c.uid_expunge([uid])

    def mark_seen(self, uid: int, folder: str = "INBOX") -> None:
        with self.client() as c:
            c.select_folder(folder)
            c.add_flags([uid], [b"\\Seen"], silent=True)

    def recreate_folder(self, folder: str) -> None:
        """Copy every message out, delete the folder, create it again and put them back,
        keywords included: what a server migration does. The folder gets a new UIDVALIDITY.
        (INBOX cannot be deleted, so use another folder.)"""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search("ALL"))
            got = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
            kept = [got[u] for u in uids]
            c.unselect_folder()
            c.delete_folder(folder)
            c.create_folder(folder)
            for item in kept:
                flags = [f for f in item[b"FLAGS"] if f != b"\\Recent"]
                # Migration tools keep the arrival time, as this does.
                c.append(folder, item[b"BODY[]"], flags=flags, msg_time=item[b"INTERNALDATE"])

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as c:
            status = c.folder_status(folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])


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


def start_dovecot(extra_config: str = "", files: Sequence[Path] = ()) -> Dovecot:
    binary = dovecot_binary()
    if binary is None:
        pytest.skip(
            f"Dovecot is not installed: the email tests need Debian's {DOVECOT_PACKAGE} "
            f"(apt-get install {DOVECOT_PACKAGE}; scripts/dev setup installs it)"
        )
    user = _run_as()
    # Not under pytest's tmp dir: that is private to the test user, and Dovecot may run as
    # another one (see the module docstring).
    root = Path(tempfile.mkdtemp(prefix="syncd-dovecot-"))
    os.chown(root, user.pw_uid, user.pw_gid)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(dovecot_config(root, port, user, extra_config))
    for path in (conf, *files):  # Dovecot reads its config and certificates as that user
        os.chown(path, user.pw_uid, user.pw_gid)
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so stop() can take all of it down
        **kwargs,
    )
    server = Dovecot(root, port, process)
    try:
        _wait_for_greeting(server)
    except BaseException:
        log = server.log
        server.stop()
        raise RuntimeError(f"Dovecot did not start; its log:\n{log}") from None
    return server


def _wait_for_greeting(server: Dovecot) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {server.process.returncode}")
        try:
            with socket.create_connection((server.host, server.port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no IMAP greeting on port {server.port}")
        time.sleep(0.05)


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


# -- SMTP ------------------------------------------------------------------------------


# -- mail ------------------------------------------------------------------------------


def compose(
    subject: str,
    sender: str,
    message_id: str | None,
    body: str = "",
    *,
    reply_to: str | None = None,
    references: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    html: str | None = None,
) -> bytes:
    """A well-formed message, as a mail client would send it."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = "support@example.com"
    message["Subject"] = subject
    message["Date"] = "Mon, 02 Mar 2026 09:00:00 +0000"
    if message_id is not None:
        message["Message-ID"] = f"<{message_id}>"
    if reply_to is not None:
        message["In-Reply-To"] = f"<{reply_to}>"
    if references:
        message["References"] = " ".join(f"<{r}>" for r in references)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body or "\n")
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


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


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return BytesParser(policy=compat32).parsebytes(self.data)


@dataclass
class CapturingHandler:
    """An aiosmtpd handler that keeps every message it accepts."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse_with: str | None = None  # e.g. "451 4.3.0 try later": refuse DATA with it

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_with:
            return self.refuse_with
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 OK"

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: CapturingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.messages()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@contextlib.contextmanager
def running_smtp(
    *, starttls: ssl.SSLContext | None = None, implicit: ssl.SSLContext | None = None
) -> Iterator[SmtpServer]:
    """aiosmtpd on loopback; with `starttls` it offers STARTTLS, with `implicit` it speaks
    TLS from the first byte."""
    handler = CapturingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=starttls,
        ssl_context=implicit,
        require_starttls=starttls is not None,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server
