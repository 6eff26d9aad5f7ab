"""Real mail servers on loopback, for `syncd demo` and the tests: Dovecot (IMAP) and an SMTP
server that keeps what it receives (aiosmtpd).

Dovecot is Debian's `dovecot-imapd` (2.3), started with a minimal config written into a temp
dir: loopback only, a free port, no TLS, plaintext auth, a static passdb/userdb (any user
name logs in with the one password, so each caller gets a mailbox of its own by using a
fresh user name), maildir under the temp dir, and its log in a file there. `stop` kills its
process group and removes the temp dir, so nothing of it outlives its user.

Dovecot refuses to run its login processes as root, so when started by root (CI runs the
tests as root) the server runs as the unprivileged `dovecot` system user the package
creates, in a temp dir that user owns. Mail is delivered the way a mailbox receives it:
IMAP APPEND, never by writing maildir files.

aiosmtpd is imported only when an SMTP server is started: it is not a dependency of syncd
itself (the daemon only ever talks to a real MTA), but of its `demo` and `test` extras.
`missing()` says which of the two servers this machine cannot run, and how to get it.
"""

from __future__ import annotations

import contextlib
import grp
import importlib.util
import os
import pwd
import secrets
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
from types import TracebackType
from typing import Any, Self

from imapclient import IMAPClient

DOVECOT_PACKAGE = "dovecot-imapd"
INSTALL_DOVECOT = f"apt-get install {DOVECOT_PACKAGE}, or run scripts/dev setup as root"
INSTALL_SMTP = "pip install 'syncd[demo]', or aiosmtpd alone; scripts/dev setup installs it"
_START_TIMEOUT = 15.0


class MailServerUnavailable(RuntimeError):
    """This machine cannot run the server; the message says what is missing and how to
    get it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dovecot_binary() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root PATH often lacks.
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


def missing() -> str | None:
    """Why `start_dovecot` or `running_smtp` cannot work here (and how to fix it), or None."""
    if dovecot_binary() is None:
        return f"Dovecot is not installed ({INSTALL_DOVECOT})"
    if importlib.util.find_spec("aiosmtpd") is None:
        return f"the Python package aiosmtpd is not installed ({INSTALL_SMTP})"
    return None


def _run_as() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("dovecot", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise MailServerUnavailable(
        "running as root and there is no 'dovecot' or 'nobody' user to run Dovecot as"
    )


def dovecot_config(
    root: Path, port: int, user: pwd.struct_passwd, password: str, extra: str = ""
) -> str:
    """The smallest config that serves IMAP on loopback, unprivileged, plus `extra`."""
    name, uid, gid = user.pw_name, user.pw_uid, user.pw_gid
    # Dovecot gives its internal sockets to this group; left at its default ("dovecot"), a
    # user who is not root cannot chown them, and the master refuses to start.
    group = grp.getgrgid(gid).gr_name
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
# A throwaway server: no fsync per message, so a test can file thousands of mails quickly.
mail_fsync = never
default_internal_user = {name}
default_login_user = {name}
default_internal_group = {group}
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = static
  args = password={password}
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
    password: str
    host: str = "127.0.0.1"

    @property
    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def mailbox(self, user: str | None = None) -> Mailbox:
        return Mailbox(self, user or f"u{uuid.uuid4().hex[:12]}")

    def stop(self, *, graceful: bool = True) -> None:
        """Stop the server and remove its directory. Graceful: the master takes its
        children down on SIGTERM and logs it, which takes Dovecot about a second; either
        way, whatever is left of the process group is then killed, so nothing outlives
        this call."""
        if graceful and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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

    def deliver_many(self, raws: Sequence[bytes], folder: str = "INBOX", chunk: int = 500) -> None:
        """APPEND many messages, `chunk` to a command (MULTIAPPEND, RFC 3502): a flood of
        thousands of mails in seconds, still through IMAP as an MDA would file them."""
        with self.client() as c:
            for i in range(0, len(raws), chunk):
                c.multiappend(folder, list(raws[i : i + chunk]))

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return sorted(int(u) for u in c.search("ALL"))

    def flags(
        self, folder: str = "INBOX", uids: Sequence[int] | None = None
    ) -> dict[int, set[str]]:
        """Keywords and flags, lower-cased, of `uids` (every message when None)."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            uids = list(uids) if uids is not None else c.search("ALL")
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


def start_dovecot(
    extra_config: str = "", files: Sequence[Path] = (), *, password: str | None = None
) -> Dovecot:
    """Start Dovecot on a free loopback port and wait for its greeting.

    `extra_config` is appended to the config (later settings win); `files` are files it
    must read (certificates), handed to the user it runs as. Without a `password`, a random
    one is made. Raises MailServerUnavailable when Dovecot is not installed, RuntimeError
    with its log when it does not start.
    """
    binary = dovecot_binary()
    if binary is None:
        raise MailServerUnavailable(f"Dovecot is not installed ({INSTALL_DOVECOT})")
    user = _run_as()
    password = password or secrets.token_urlsafe(18)
    # A directory of its own, not the caller's: that may be private to the caller, and
    # Dovecot may run as another user (see the module docstring).
    root = Path(tempfile.mkdtemp(prefix="syncd-dovecot-"))
    try:
        os.chown(root, user.pw_uid, user.pw_gid)
        port = free_port()
        conf = root / "dovecot.conf"
        conf.write_text(dovecot_config(root, port, user, password, extra_config))
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
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    server = Dovecot(root, port, process, password)
    try:
        _wait_for_greeting(server)
    except BaseException:
        log = server.log
        server.stop(graceful=False)
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


# -- mail -------------------------------------------------------------------------------


def compose(
    subject: str,
    sender: str,
    message_id: str | None,
    body: str = "",
    *,
    to: str = "support@example.com",
    date: str = "Mon, 02 Mar 2026 09:00:00 +0000",
    reply_to: str | None = None,
    references: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    html: str | None = None,
) -> bytes:
    """A well-formed message, as a mail client would send it."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = date
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


# -- SMTP -------------------------------------------------------------------------------


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
    """aiosmtpd on loopback, keeping every message it accepts; with `starttls` it offers
    STARTTLS, with `implicit` it speaks TLS from the first byte. Raises
    MailServerUnavailable when aiosmtpd is not installed."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        raise MailServerUnavailable(
            f"the Python package aiosmtpd is not installed ({INSTALL_SMTP})"
        ) from None
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
