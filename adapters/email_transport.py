"""The email adapter's connections: an IMAP session that counts its round trips, and an SMTP
session that sends one reply in two steps.

Both turn every library, socket and TLS error into syncd's error classes (RetriableError
for dropped connections, timeouts and temporary refusals; FatalError for refused logins,
bad certificates and permanent refusals), with messages that name the server but never the
password: every message passes through syncd.redact, which knows the password since the
config resolved it.
"""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors
from pydantic import Field, field_validator, model_validator

from syncd.adapters.email_message import (
    OTHER_FIELDS,
    THREAD_FIELDS,
    Fetched,
    join_headers,
    single_line,
    valid_address,
)
from syncd.config import SecretRef, Strict
from syncd.errors import FatalError, RetriableError, SourceError
from syncd.redact import redact

TlsMode = Literal["implicit", "starttls", "plain"]
_HEADER_BYTES = 32 * 1024  # at most this much of each group of header fields is fetched
_THREAD_SECTION = f"HEADER.FIELDS ({' '.join(THREAD_FIELDS)})"
_OTHER_SECTION = f"HEADER.FIELDS ({' '.join(OTHER_FIELDS)})"
T = TypeVar("T")


class ImapSettings(Strict):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    # implicit: TLS from the first byte (993); starttls: upgrade on 143; plain: no TLS,
    # for a server on loopback (anything else is logged as a warning on every start).
    tls: TlsMode = "implicit"
    user: str
    password: SecretRef
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    @field_validator("folders")
    @classmethod
    def _folder_names(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a folder is listed twice")
        if any(not f or single_line(f) != f for f in v):
            raise ValueError("folder names must be non-empty single lines")
        return v


class SmtpSettings(Strict):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: TlsMode = "starttls"
    user: str | None = None
    password: SecretRef | None = None
    from_address: str | None = Field(
        default=None, description="the From of syncd's replies; the mailbox address if unset"
    )

    @property
    def effective_port(self) -> int:
        return self.port or {"implicit": 465, "starttls": 587, "plain": 25}[self.tls]

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpSettings:
        if (self.user is None) != (self.password is None):
            raise ValueError("set both user and password, or neither (a relay without login)")
        if self.from_address is not None and valid_address(self.from_address) is None:
            raise ValueError("from_address must be a plain address such as syncd@example.com")
        return self


# -- IMAP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderInfo:
    uidvalidity: int
    uidnext: int
    modseq: int | None  # None when the server has no CONDSTORE
    count: int


class ImapSession:
    """One logged-in IMAP connection, kept open between cycles. Counts round trips and
    turns every library or socket error into RetriableError or FatalError, with messages
    that name the server but never the password."""

    def __init__(
        self, source: str, settings: ImapSettings, password: Callable[[], str], timeout: float
    ) -> None:
        self.source = source
        self.settings = settings
        self._password = password
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self._client: IMAPClient | None = None
        self.condstore = False
        self._selected: tuple[str, bool] | None = None  # (folder, writable)

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port}"

    def _connect(self) -> IMAPClient:
        s = self.settings
        context = ssl.create_default_context()
        client = IMAPClient(
            s.host,
            s.effective_port,
            ssl=s.tls == "implicit",
            ssl_context=context,
            timeout=self.timeout,
        )
        self.counts["CONNECT"] += 1
        client.normalise_times = False  # aware datetimes
        self._client = client
        if s.tls == "starttls":
            self._count("STARTTLS", lambda: client.starttls(context))
        self._count("LOGIN", lambda: client.login(s.user, self._password()))
        if b"CONDSTORE" in self._count("CAPABILITY", client.capabilities):
            self._count("ENABLE", lambda: client.enable("CONDSTORE"))
            self.condstore = True
        return client

    def _count(self, name: str, call: Callable[[], T]) -> T:
        assert self._client is not None
        imap = self._client._imap
        before = getattr(imap, "tagnum", None)
        try:
            return call()
        finally:
            # Every command gets a tag, so the tag counter is the exact number of round
            # trips, including any the library makes on its own (a CAPABILITY refresh).
            after = getattr(imap, "tagnum", None)
            sent = after - before if isinstance(before, int) and isinstance(after, int) else 1
            if sent:
                self.counts[name] += sent

    def run(self, name: str, call: Callable[[IMAPClient], T]) -> T:
        """Run one command, connecting first when needed."""
        try:
            client = self._client or self._connect()
            return self._count(name, lambda: call(client))
        except SourceError:
            raise
        except imap_errors.LoginError as exc:
            self.drop()
            raise FatalError(
                self.source,
                f"IMAP login as {self.settings.user!r} refused by {self.where}: {self._text(exc)}",
            ) from None
        except ssl.SSLCertVerificationError as exc:
            self.drop()
            raise FatalError(
                self.source, f"IMAP TLS certificate of {self.where} rejected: {exc.verify_message}"
            ) from None
        except (imaplib.IMAP4.abort, OSError, EOFError) as exc:
            self.drop()
            raise RetriableError(
                self.source,
                f"IMAP connection to {self.where} failed during {name}: {self._text(exc)}",
            ) from None
        except imaplib.IMAP4.error as exc:
            text = self._text(exc)
            if any(code in text for code in ("UNAVAILABLE", "INUSE", "SERVERBUG", "LIMIT")):
                raise RetriableError(self.source, f"IMAP {name} on {self.where}: {text}") from None
            raise FatalError(self.source, f"IMAP {name} on {self.where}: {text}") from None

    @staticmethod
    def _text(exc: BaseException) -> str:
        return redact(single_line(str(exc)))[:300] or type(exc).__name__

    def drop(self) -> None:
        client, self._client, self._selected = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.logout()
        self.drop()

    # -- commands ---------------------------------------------------------------------

    def connect(self) -> None:
        if self._client is None:
            self.run("CONNECT", lambda _c: None)

    def status(self, folder: str) -> FolderInfo:
        what = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
        self.connect()  # first, so CONDSTORE is known before choosing what to ask
        if self.condstore:
            what.append(b"HIGHESTMODSEQ")
        got = self.run("STATUS", lambda c: c.folder_status(folder, what))
        return _folder_info(got, "MESSAGES")

    def examine(self, folder: str, writable: bool = False) -> FolderInfo:
        got = self.run("SELECT", lambda c: c.select_folder(folder, readonly=not writable))
        self._selected = (folder, writable)
        if writable and b"\\*" not in got.get(b"PERMANENTFLAGS", ()):
            raise FatalError(
                self.source,
                f"{self.where} does not allow keywords in {folder!r} (no \\* in PERMANENTFLAGS); "
                "syncd needs them to mark owners",
            )
        return _folder_info(got, "EXISTS")

    def release(self) -> None:
        """Leave the selected folder. STATUS on the selected folder answers from the
        session's own view, which other clients' changes do not reach until the folder is
        synced again, so a cycle that starts with STATUS must start with none selected.
        UNSELECT (RFC 3691) never expunges; without it, CLOSE on a read-only folder
        doesn't either."""
        if self._selected is None or self._client is None:
            return
        folder, writable = self._selected
        # A failure here has already dropped the connection, which leaves nothing selected.
        with contextlib.suppress(SourceError):
            if self._client.has_capability("UNSELECT"):
                self.run("UNSELECT", lambda c: c.unselect_folder())
            else:
                if writable:
                    self.examine(folder)
                self.run("CLOSE", lambda c: c.close_folder())
        self._selected = None

    def ensure(self, folder: str, writable: bool = False) -> None:
        if self._selected != (folder, writable) or self._client is None:
            self.examine(folder, writable)

    def search(self, criteria: list[Any]) -> list[int]:
        return sorted(int(u) for u in self.run("SEARCH", lambda c: c.search(criteria)))

    def changed_since(self, modseq: int) -> list[int]:
        # SEARCH MODSEQ n matches n and above (RFC 7162), unlike FETCH's CHANGEDSINCE.
        return self.search(["MODSEQ", str(modseq + 1)])

    def uids_from(self, uidnext: int) -> list[int]:
        # "n:*" also matches the highest UID when there is none above n: filter.
        return [u for u in self.search(["UID", f"{uidnext}:*"]) if u >= uidnext]

    def flags(self, uids: list[int]) -> dict[int, tuple[tuple[str, ...], int]]:
        items = ["FLAGS", "MODSEQ"] if self.condstore else ["FLAGS"]
        got = self.run("FETCH", lambda c: c.fetch(uids, items))
        return {int(u): (_flags(d), _modseq(d)) for u, d in got.items()}

    def messages(
        self, folder: str, uidvalidity: int, uids: list[int], body_bytes: int
    ) -> list[Fetched]:
        items = [
            "FLAGS",
            "INTERNALDATE",
            "RFC822.SIZE",
            f"BODY.PEEK[{_THREAD_SECTION}]<0.{_HEADER_BYTES}>",
            f"BODY.PEEK[{_OTHER_SECTION}]<0.{_HEADER_BYTES}>",
            f"BODY.PEEK[TEXT]<0.{body_bytes}>",
        ]
        if self.condstore:
            items.append("MODSEQ")
        got = self.run("FETCH", lambda c: c.fetch(uids, items))
        return [
            _fetched(folder, uidvalidity, int(uid), data, body_bytes)
            for uid, data in sorted(got.items())
        ]

    def store(self, uids: list[int], add: Iterable[str], remove: Iterable[str]) -> None:
        add_b, remove_b = [a.encode() for a in add], [r.encode() for r in remove]
        if add_b:
            self.run("STORE", lambda c: c.add_flags(uids, add_b, silent=True))
        if remove_b:
            self.run("STORE", lambda c: c.remove_flags(uids, remove_b, silent=True))


def _folder_info(got: dict[bytes, Any], count_key: str) -> FolderInfo:
    modseq = got.get(b"HIGHESTMODSEQ")
    return FolderInfo(
        uidvalidity=int(got[b"UIDVALIDITY"]),
        uidnext=int(got.get(b"UIDNEXT", 1)),
        modseq=None if modseq is None else int(modseq),
        count=int(got.get(count_key.encode(), 0)),
    )


def _flags(data: dict[bytes, Any]) -> tuple[str, ...]:
    out = []
    for flag in data.get(b"FLAGS", ()):
        with contextlib.suppress(UnicodeDecodeError, AttributeError):
            out.append(flag.decode("ascii") if isinstance(flag, bytes) else str(flag))
    return tuple(out)


def _modseq(data: dict[bytes, Any]) -> int:
    value = data.get(b"MODSEQ", (0,))
    return int(value[0] if isinstance(value, tuple | list) else value)


def _section(data: dict[bytes, Any], prefix: bytes) -> bytes:
    # BODY.PEEK[...]<0.n> comes back keyed as BODY[...]<0>.
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(prefix):
            return value if isinstance(value, bytes) else b""
    return b""


def _fetched(
    folder: str, uidvalidity: int, uid: int, data: dict[bytes, Any], body_bytes: int
) -> Fetched:
    when = data.get(b"INTERNALDATE")
    if not isinstance(when, datetime):
        when = datetime.now(UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return Fetched(
        folder=folder,
        uidvalidity=uidvalidity,
        uid=uid,
        flags=_flags(data),
        modseq=_modseq(data),
        internal_date=when,
        size=int(data.get(b"RFC822.SIZE", 0) or 0),
        header=join_headers(
            _section(data, f"BODY[{_THREAD_SECTION}]".encode()),
            _section(data, f"BODY[{_OTHER_SECTION}]".encode()),
        ),
        body=_section(data, b"BODY[TEXT]"),
        body_limit=body_bytes,
    )


def _thread_terms(root: str) -> list[Any]:
    value = f"<{root}>"
    # Prefix notation: OR (OR a b) c.
    return [
        "OR",
        "OR",
        "HEADER",
        "Message-ID",
        value,
        "HEADER",
        "References",
        value,
        "HEADER",
        "In-Reply-To",
        value,
    ]


def rebuild_criteria(roots: list[str]) -> list[Any]:
    """SEARCH criteria for every message of these threads: the root itself, and messages
    naming it in References or In-Reply-To."""
    criteria = _thread_terms(roots[-1])
    for root in reversed(roots[:-1]):
        criteria = ["OR", *_thread_terms(root), *criteria]
    return criteria


# -- SMTP -------------------------------------------------------------------------------


def _smtp_error(source: str, where: str, step: str, exc: BaseException) -> SourceError:
    text = redact(single_line(str(exc)))[:300]
    message = f"SMTP {step} on {where}: {text or type(exc).__name__}"
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500:
        return FatalError(source, message)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return FatalError(source, message)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FatalError(source, message)
    return RetriableError(source, message)


class SmtpEnvelope:
    """An SMTP session that has had its envelope accepted and waits for the content, so the
    content can go last, after the keywords (see the module docstring)."""

    def __init__(
        self, source: str, settings: SmtpSettings, password: str | None, timeout: float
    ) -> None:
        self.source = source
        self.where = f"{settings.host}:{settings.effective_port}"
        self.settings = settings
        self.password = password
        self.timeout = timeout
        self.client: smtplib.SMTP | None = None

    def open(self, sender: str, recipient: str) -> None:
        s = self.settings
        context = ssl.create_default_context()
        try:
            if s.tls == "implicit":
                self.client = smtplib.SMTP_SSL(
                    s.host, s.effective_port, timeout=self.timeout, context=context
                )
            else:
                self.client = smtplib.SMTP(s.host, s.effective_port, timeout=self.timeout)
            self.client.ehlo()
            if s.tls == "starttls":
                self.client.starttls(context=context)
                self.client.ehlo()
            if s.user is not None and self.password is not None:
                self.client.login(s.user, self.password)
            self._envelope(sender, recipient)
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise _smtp_error(self.source, self.where, "envelope", exc) from None

    def _envelope(self, sender: str, recipient: str) -> None:
        """MAIL FROM and RCPT TO; raises the smtplib error for a refusal."""
        assert self.client is not None
        code, reply = self.client.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = self.client.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})

    def send(self, content: bytes) -> None:
        assert self.client is not None
        try:
            # data() raises only when DATA itself is refused; the verdict on the content
            # comes back as its return value.
            code, reply = self.client.data(content)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(self.source, self.where, "DATA", exc) from None

    def send_another(self, sender: str, recipient: str, content: bytes) -> None:
        """One more message on the same session, after send()."""
        try:
            self._envelope(sender, recipient)
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(self.source, self.where, "envelope", exc) from None
        self.send(content)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
