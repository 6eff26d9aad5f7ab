"""Text from sources never reaches a terminal raw.

The unit tests pin what `safe_text` removes and keeps; the pty tests run the installed
`syncd` command on a real pseudo-terminal (so it behaves as for a person: is a tty, colours
on) against a ledger whose titles, notes, handles and errors carry escape sequences and
control characters, and read the bytes the terminal would have received.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import termios
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from syncd.adapters.email_reply import ReplyTarget, compose_reply
from syncd.config import Person
from syncd.ledger import Ledger, now_utc
from syncd.models import Handoff, Observation, Page
from syncd.people import Directory
from syncd.safetext import safe_text
from tests.syncdproc import read_terminal

SYNCD = Path(sys.executable).with_name("syncd")

# Window title (OSC ... BEL), clear screen (CSI), a forged row (CR LF), overwrite (BS),
# NUL, a bidi override, an 8-bit CSI, a terminal reset (ESC c).
TITLE = (
    "Pay\x1b]0;pwned\x07ment\x1b[2J fails\r\nREQ-99  FAKE-LINE\x08\x08\x00 \u202eflipped\u202c"
    " \x9b31mred\x9b0m\x1bc"
)
NOTE = "covering\x1b]8;;http://evil.example\x07 for Alice\rGOTCHA\x07\x1b[1A"
HANDLE = "zed\x1b[38;5;196m\x07-gh\x08"
ERROR = "HTTP 503\x1b]0;owned\x07 from\r\nthe proxy"
OWN_COLOURS = re.compile(rb"\x1b\[(?:0|1|2|22|3[0-7]|39)m")
FORBIDDEN = {b"\x1b": "ESC", b"\x07": "BEL", b"\r": "CR", b"\x08": "BS", b"\x00": "NUL"}


# -- the function ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b]0;set title\x07b", "ab"),  # OSC ended by BEL
        ("a\x1b]0;set title\x1b\\b", "ab"),  # OSC ended by ST
        ("a\x9d0;title\x9cb", "ab"),  # 8-bit OSC and ST
        ("x\x1b[2Jy\x1b[1;31mz", "xyz"),  # CSI
        ("\x9b31mred\x9b0m", "red"),  # 8-bit CSI
        ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS (sixel)
        ("reset\x1bc", "reset"),
        ("REQ-99\r\nFAKE", "REQ-99  FAKE"),
        ("ab\x08\x08cd\x00e\x7f", "abcde"),
        ("\u202eevil\u202c \u2066iso\u2069 \u200fm", "evil iso m"),
        ("tab\there\x0bv\x0cf", "tab here v f"),
        ("line\u2028sep\x85nel", "line sep nel"),
        ("\x1b]8;;http://x\x07link\x1b]8;;\x07", "link"),
        ("ok é 日本 — “quotes” 🙂", "ok é 日本 — “quotes” 🙂"),
        ("", ""),
    ],
)
def test_safe_text(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_keep_newlines_keeps_only_line_feeds() -> None:
    assert safe_text("one\r\ntwo\rthree\n\x1b[2Jfour", keep_newlines=True) == (
        "one\ntwo three\nfour"
    )


def test_unterminated_sequences_cost_linear_time_and_keep_text() -> None:
    text = "\x1b]" + "x" * 200_000 + "\x1b]" * 50_000 + "tail"
    out = safe_text(text)
    assert out.endswith("tail")
    assert "\x1b" not in out


# -- the views on a terminal -----------------------------------------------------------------


def hostile_ledger(path: Path) -> None:
    now = now_utc()
    people = [Person(id="alice", name="Alice\x1b[5m Moreau", handles={"github": "alice-m"})]
    directory = Directory.build(people)
    with Ledger(path) as ledger:
        ledger.sync_people(people)
        obs = Observation(
            source="api",
            ref="acme/api#1",
            url="https://github.example/acme/api/issues/1",
            title=TITLE,
            state="open",
            owners=("alice-m",),
            updated_at=now - timedelta(days=1),
            keys=("github:acme/api#1",),
        )
        ledger.apply_page("api", "github", Page([obs]), directory, now=now - timedelta(days=1))
        other = Observation(
            source="api",
            ref="acme/api#2",
            url="https://github.example/acme/api/issues/2",
            title="Second",
            state="open",
            owners=(HANDLE,),
            updated_at=now,
            keys=("github:acme/api#2",),
        )
        ledger.apply_page("api", "github", Page([other]), directory, now=now)
        ledger.assign("REQ-1", None, actor="ops\x1b]0;x\x07user", note=NOTE, now=now)
        ledger.record_poll("api", "github", ok=False, error=ERROR, now=now)


def on_terminal(*args: str) -> bytes:
    """What `syncd ARGS` writes to a pseudo-terminal, byte for byte: output processing is
    off, so a CR in the bytes came from syncd, not from the terminal's newline mapping."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(SYNCD), *args], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = read_terminal(master)
    assert proc.wait(timeout=60) == 0, output.decode("utf-8", "replace")
    return output


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "ledger.db"
    hostile_ledger(path)
    return path


@pytest.mark.parametrize(
    ("command", "visible"),
    [
        (["ls", "--state", "open"], ["Payment fails REQ-99 FAKE-LINE", "flipped red", "zed-gh"]),
        (
            ["show", "REQ-1"],
            ["created as 'Payment fails  REQ-99", "FAKE-LINE", "for Alice GOTCHA", "opsuser"],
        ),
        (["history"], ["for Alice GOTCHA", "opsuser"]),
        (["people"], ["Alice Moreau", "zed-gh"]),
        (["status"], ["HTTP 503 from the proxy"]),
    ],
)
def test_views_send_no_control_characters_to_a_terminal(
    ledger: Path, command: list[str], visible: list[str]
) -> None:
    # syncd colours some rows itself on a terminal (plain SGR codes); anything else with
    # an ESC came from the data. The hostile data uses codes syncd never does.
    out = OWN_COLOURS.sub(b"", on_terminal("--ledger", str(ledger), *command))
    found = [name for byte, name in FORBIDDEN.items() if byte in out]
    assert not found, f"{command} sent {found} to the terminal: {out!r}"
    text = out.decode("utf-8")
    assert "\u202e" not in text
    assert "\x9b" not in text
    for part in visible:
        assert part in text, f"{part!r} missing from {command}: {text}"
    # A line break inside a title cannot forge a row of its own.
    assert not any(line.startswith("REQ-99") for line in text.splitlines())


def test_json_keeps_the_exact_values(ledger: Path) -> None:
    out = subprocess.run(
        [str(SYNCD), "--ledger", str(ledger), "show", "REQ-1", "--json"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    assert json.loads(out)["title"] == TITLE


# -- outgoing mail ---------------------------------------------------------------------------


def test_reply_body_and_subject_carry_no_control_characters() -> None:
    handoff = Handoff(
        request_key="REQ-1",
        title=TITLE,
        from_owner="alice",
        from_name="Alice\x1b[2J",
        to_owner="bob",
        to_name="Bob\x07",
        origin="github",
        actor="ops\x1b]0;x\x07user",
        note="line one\x1b[1A\r\nline two\x00 \u202eend",
    )
    target = ReplyTarget("syncd@example.com", "support@example.com", TITLE, None, None)
    message: EmailMessage = compose_reply(handoff, target, "r1@example.com", now_utc(), "owner-")
    body = message.get_content()
    subject = str(message["Subject"])
    for text in (body, subject):
        assert not any(c in text for c in "\x1b\x07\x08\x00\u202e"), repr(text)
    assert "Payment fails REQ-99 FAKE-LINE" in subject
    assert "    line one\n    line two end" in body
    assert "Changed by: opsuser" in body


def test_readable_log_lines_carry_no_control_characters() -> None:
    import io

    import structlog

    from syncd import logs

    stream = io.StringIO()
    logs.configure(json=False, stream=stream)
    try:
        structlog.get_logger("syncd.test").warning("poll_failed", error=ERROR, source="api")
    finally:
        logs.configure()
    line = stream.getvalue()
    assert "HTTP 503 from" in line
    assert not any(c in line for c in "\x1b\x07\r"), repr(line)
