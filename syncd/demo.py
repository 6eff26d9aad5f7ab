"""`syncd demo`: handoffs propagated between tools, on loopback, with no credentials.

It starts emulated GitHub, Jira and Trello and, when Dovecot is installed, a real Dovecot
holding the shared mailbox support@acme.example with an SMTP server that keeps what syncd
sends (syncd/sandbox/mail.py). It seeds a small story, runs the real daemon (the same
scheduler, ledger and write-back as `syncd run`) and prints the ledger, the handoff history
and, for the mailbox, the thread's owner keyword and the replies syncd sent. Everything
lives in temporary directories that are removed at the end (the demo's own one is kept
with --keep), and every server it started is stopped.

The story. Checkout fails for some cards: support files acme/api#1 and assigns Alice; the
web team files acme/web#1 as "[acme/api#1] Checkout button spins forever"; ops opens OPS-7
in Jira with a "GitHub issue: acme/api#1" line; later the account team puts a Trello card
on its board with a "Jira: OPS-7" line. Each of these *declares* the same work, the way a
team would, so syncd folds them into one request (README "How items are linked"). A
customer writes to support@ quoting OPS-7: an outsider's mail never links by what it says,
so it becomes a request of its own until an operator runs `syncd link REQ-1 <Message-ID>`.
Then every item has Alice; in the mailbox that is the keyword owner-alice on the thread and
one reply saying so.
Then Alice hands the API issue to Bob in GitHub, and Bob appears in acme/web, Jira, Trello
and the mailbox; then Bob hands the card to Carol in Trello, and Carol appears everywhere
else. Each handoff moves the thread's keyword and sends exactly one reply into the thread.
The replies are delivered into the shared mailbox, as a real MTA would deliver them, and
syncd does not read them back as new requests.

Without Dovecot or aiosmtpd (or with --no-email) the story runs without the mailbox, and
says so at the start and at the end. aiosmtpd is not a dependency of syncd itself, only of
its `demo` and `test` extras (scripts/dev installs the latter): the daemon never runs an
SMTP server, so a production install should not carry one.

The exit status is 0 only when the story reached its end state.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import click

from syncd import logs
from syncd.daemon import Daemon
from syncd.errors import LedgerError
from syncd.http import HttpOptions, TraceWriter
from syncd.ledger import Ledger
from syncd.safetext import safe_text
from syncd.sandbox import jira as jira_emulator
from syncd.sandbox import mail as mail_servers
from syncd.sandbox import trello as trello_emulator
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator, adf, link, text
from syncd.sandbox.mail import Mailbox, MailServerUnavailable, Received, SmtpServer
from syncd.sandbox.trello import TrelloEmulator
from syncd.terminal import colour_wanted

# Names of environment variables, not secrets: the demo's tokens are made up per run.
ENV = {
    "github": "SYNCD_DEMO_GITHUB_TOKEN",
    "jira": "SYNCD_DEMO_JIRA_TOKEN",
    "trello_key": "SYNCD_DEMO_TRELLO_KEY",
    "trello_token": "SYNCD_DEMO_TRELLO_TOKEN",
    "imap": "SYNCD_DEMO_IMAP_PASSWORD",
}
PEOPLE = {  # id: (name, github login, trello username, email address)
    "alice": ("Alice Moreau", "alice-m", "alicemoreau", "alice@acme.example"),
    "bob": ("Bob Okafor", "bob-ok", "bobokafor", "bob@acme.example"),
    "carol": ("Carol Diaz", "carol-d", "caroldiaz", "carol@acme.example"),
}
# Every source polls each second, so the whole story takes a few seconds.
SOURCES = """\
ledger = "ledger.db"

[daemon]
jitter = "0s"

[[sources]]
name = "api"
type = "github"
repo = "acme/api"
base_url = "{github}"
token = {{ env = "{env[github]}" }}
interval = "1s"
write_spacing = 0

[[sources]]
name = "web"
type = "github"
repo = "acme/web"
base_url = "{github}"
token = {{ env = "{env[github]}" }}
interval = "1s"
write_spacing = 0

[[sources]]
name = "ops"
type = "jira"
base_url = "{jira}"
email = "{jira_email}"
token = {{ env = "{env[jira]}" }}
jql = "project = OPS"
interval = "1s"

[[sources]]
name = "accounts"
type = "trello"
boards = ["{board}"]
base_url = "{trello}"
key = {{ env = "{env[trello_key]}" }}
token = {{ env = "{env[trello_token]}" }}
interval = "1s"
commands = true
"""
# The shared mailbox. Plain IMAP and SMTP are fine here: both servers are on loopback.
MAILBOX_SOURCE = """
[[sources]]
name = "support"
type = "email"
address = "{address}"
interval = "1s"

[sources.imap]
host = "{imap_host}"
port = {imap_port}
tls = "plain"
user = "{user}"
password = {{ env = "{env[imap]}" }}

[sources.smtp]
host = "{smtp_host}"
port = {smtp_port}
tls = "plain"
from_address = "{sender}"
"""
PERSON = """
[[people]]
id = "{id}"
name = "{name}"
handles = {{ github = "{login}", jira = "{account}", trello = "{username}", email = "{email}" }}
"""
MAILBOX = "support@acme.example"
SYNCD_SENDER = "syncd@acme.example"
CUSTOMER = "Dana Whitfield <dana@globex.example>"
CUSTOMER_MAIL_ID = "card-payments-4711@globex.example"
CUSTOMER_SUBJECT = "Card payments declined at checkout (your ref OPS-7)"
# How each item declares that it is the same work as acme/api#1 (or OPS-7).
WEB_DECLARES = "[acme/api#1]"
OPS_DECLARES = "GitHub issue: "
CARD_DECLARES = "Jira: OPS-7"
CUSTOMER_BODY = """\
Hello,

since Monday our customers in Germany cannot pay by card: the 3-D Secure page never
completes. Your status page says you are tracking this as OPS-7. Who is looking at it?

Dana Whitfield
Globex GmbH, accounts payable
"""
# The owners the mailbox is told about, one reply each, in the story's order.
HANDOFFS = ("alice", "bob", "carol")


def step(message: str) -> None:
    """One sentence of the story, on stdout with the tables it introduces, so that
    `syncd demo > file` keeps them in order. Bold only on a terminal without NO_COLOR."""
    # Narration quotes owners, titles and subjects the tools hand back.
    line = f"==> {safe_text(message)}"
    click.echo(click.style(line, bold=True) if colour_wanted(sys.stdout) else line)


def listing(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c" """
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def owners_sentence(owners: dict[str, str]) -> str:
    """Who owns each item, as a sentence: "Carol is the owner everywhere: GitHub acme/api#1,
    ... and the mail thread", or per owner while they differ."""
    names = {pid: v[0].split()[0] for pid, v in PEOPLE.items()}
    by_owner: dict[str, list[str]] = {}
    for item, owner in owners.items():
        by_owner.setdefault(owner, []).append(item)
    if len(by_owner) == 1:
        ((owner, items),) = by_owner.items()
        return f"{names.get(owner, owner)} is the owner everywhere: {listing(items)}"
    return "; ".join(
        f"{names.get(owner, owner)} on {listing(items)}" for owner, items in by_owner.items()
    )


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@dataclass
class Mail:
    """The shared mailbox: an account on a real Dovecot, and the SMTP server syncd's
    replies go to."""

    mailbox: Mailbox
    smtp: SmtpServer
    uid: int | None = None  # the customer's mail, once delivered
    relayed: int = 0  # how many of syncd's replies were delivered into the mailbox

    def keywords(self) -> list[str]:
        """The keywords (not system flags) on the customer's mail."""
        if self.uid is None:
            return []
        flags = self.mailbox.flags().get(self.uid, set())
        return sorted(f for f in flags if not f.startswith("\\"))

    def owner(self) -> str:
        owners = [k.removeprefix("owner-") for k in self.keywords() if k.startswith("owner-")]
        # Two owner keywords at once would be a bug; show both so `everywhere` fails.
        return "+".join(owners) or "nobody"

    def replies(self) -> list[Received]:
        return self.smtp.received

    def relay(self) -> None:
        """Deliver syncd's replies into the shared mailbox, as the MTA behind the SMTP
        server would: they land in the watched folder, where syncd must not take them
        for new requests."""
        for received in self.replies()[self.relayed :]:
            self.mailbox.deliver(received.data)
            self.relayed += 1


@dataclass
class World:
    github: GitHubEmulator
    jira: JiraEmulator
    trello: TrelloEmulator
    accounts: dict[str, str]  # person id -> Jira accountId
    mail: Mail | None = None
    board: str = ""
    card: str = ""
    items: int = field(init=False)

    def __post_init__(self) -> None:
        self.items = 5 if self.mail else 4  # the story's items across all tools

    def owners(self) -> dict[str, str]:
        """Who each tool shows as owner of the story's items."""
        login = {v[1]: k for k, v in PEOPLE.items()}
        user = {v[2]: k for k, v in PEOPLE.items()}
        account = {v: k for k, v in self.accounts.items()}

        def first(names: list[str], table: dict[str, str]) -> str:
            return table.get(names[0], names[0]) if names else "nobody"

        out = {
            f"GitHub {repo}#1": first(
                [a["login"] for a in self.github.issue(repo, 1)["assignees"]], login
            )
            for repo in ("acme/api", "acme/web")
        }
        assignee = self.jira.assignee("OPS-7")
        out["Jira OPS-7"] = account.get(assignee, "nobody") if assignee else "nobody"
        if self.card:
            out["Trello card"] = first(self.trello.members_of(self.card), user)
        if self.mail and self.mail.uid is not None:
            out["mail thread"] = self.mail.owner()
        return out

    def everywhere(self, person: str) -> bool:
        owners = self.owners()
        return len(owners) == self.items and set(owners.values()) == {person}

    def replied(self, count: int) -> bool:
        """Whether the mailbox got `count` replies so far (always, without a mailbox)."""
        return self.mail is None or len(self.mail.replies()) >= count

    def relay(self) -> None:
        if self.mail:
            self.mail.relay()


def seed(world: World) -> None:
    gh = world.github
    # The support desk and the web lead are collaborators too: on GitHub only members'
    # declarations link ([sources] trusted_authors).
    team = [v[1] for v in PEOPLE.values()] + ["support-desk", "web-lead"]
    for repo in ("acme/api", "acme/web"):
        gh.add_repo(repo, collaborators=team)
    gh.create_issue(
        "acme/api",
        "Checkout fails for cards issued in the EU",
        "3-D Secure challenge never completes; payments time out after 30 s.",
        assignees=["alice-m"],
        user="support-desk",
    )
    gh.create_pull_request("acme/api", "Retry 3-D Secure callback", "Fixes #1", user="alice-m")
    world.jira.add_project("OPS", "Operations", next_number=7)
    world.board = world.trello.add_board(
        "Key accounts", members=[v[2] for v in PEOPLE.values()], lists=("To Do", "Doing", "Done")
    )


def file_the_others(world: World) -> None:
    """The items that declare acme/api#1, filed once syncd has read it: so REQ-1 is always
    the API issue, with its title, whichever source the daemon happens to poll first."""
    gh = world.github
    gh.create_issue(
        "acme/web",
        f"{WEB_DECLARES} Checkout button spins forever",
        "Customers report the spinner never stops; the backend side is the API issue.",
        user="web-lead",
    )
    gh.create_issue("acme/web", "Dark mode toggle is unreadable", assignees=["bob-ok"])
    world.jira.create_issue(
        "OPS",
        "EU card payments failing at checkout",
        adf(
            [text("Card payments from the EU fail at the 3-D Secure step.")],
            [
                text(OPS_DECLARES),
                link("acme/api#1", "https://github.com/acme/api/issues/1"),
            ],
        ),
        assignee=world.accounts["alice"],
    )


def customer_mail() -> bytes:
    return mail_servers.compose(
        CUSTOMER_SUBJECT,
        CUSTOMER,
        CUSTOMER_MAIL_ID,
        CUSTOMER_BODY,
        to=MAILBOX,
        date=formatdate(localtime=False, usegmt=True),
    )


def config_text(world: World) -> str:
    text_ = SOURCES.format(
        github=world.github.base_url,
        jira=world.jira.base_url,
        jira_email=jira_emulator.DEFAULT_EMAIL,
        trello=world.trello.base_url,
        board=world.board,
        env=ENV,
    )
    if world.mail:
        server = world.mail.mailbox.server
        text_ += MAILBOX_SOURCE.format(
            address=MAILBOX,
            imap_host=server.host,
            imap_port=server.port,
            user=world.mail.mailbox.user,
            smtp_host=world.mail.smtp.host,
            smtp_port=world.mail.smtp.port,
            sender=SYNCD_SENDER,
            env=ENV,
        )
    for pid, (name, login, username, email) in PEOPLE.items():
        text_ += PERSON.format(
            id=pid,
            name=name,
            login=login,
            account=world.accounts[pid],
            username=username,
            email=email,
        )
    return text_


def ledger_count(ledger: Path, sql: str) -> int:
    """One number from the ledger, read the way an operator would: from the file."""
    try:
        with Ledger(ledger, readonly=True) as led:
            return int(led.conn.execute(sql).fetchone()[0])
    except LedgerError:
        return 0  # not created yet


def linked(ledger: Path) -> int:
    """Items linked to REQ-1."""
    return ledger_count(ledger, "SELECT count(*) FROM links WHERE request_id = 1")


def mail_request(ledger: Path) -> int | None:
    """The request the customer's mail is in, once the mailbox has been read."""
    return (
        ledger_count(
            ledger,
            "SELECT coalesce((SELECT request_id FROM links WHERE source = 'support' LIMIT 1), 0)",
        )
        or None
    )


def operator_links_the_mail(ledger: Path) -> None:
    """`syncd link`, as an operator would type it in another terminal."""
    args = ["link", "REQ-1", f"<{CUSTOMER_MAIL_ID}>", "--note", "Dana's mail is about this"]
    click.echo("  $ syncd " + " ".join(shlex.quote(a) for a in args))
    ran = subprocess.run(
        [sys.executable, "-m", "syncd", "--ledger", str(ledger), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in (ran.stdout + ran.stderr).splitlines():
        click.echo("  " + safe_text(line))


def story(world: World, daemon: Daemon, ledger: Path) -> None:
    """What the people in the story do, while the daemon runs in the main thread."""
    try:
        wait_for(lambda: linked(ledger) == 1)  # REQ-1 is acme/api#1
        file_the_others(world)
        step(
            f"syncd read it as REQ-1. The web team files acme/web#1 titled '{WEB_DECLARES} "
            f"Checkout button spins forever', and ops opens OPS-7 with a "
            f"'{OPS_DECLARES}acme/api#1' line"
        )
        if wait_for(lambda: world.owners()["GitHub acme/web#1"] == "alice"):
            step(
                f"acme/web#1's title starts with {WEB_DECLARES} and OPS-7 says "
                f"'{OPS_DECLARES}acme/api#1': syncd linked the three as declared, and gave "
                "acme/web#1 to Alice"
            )
        world.card = world.trello.create_card(
            world.board,
            "Doing",
            "Acme Corp: card payments failing",
            f"Escalated to ops.\n{CARD_DECLARES}",
            members=["alicemoreau"],
            by="alicemoreau",
        )
        step(f"the account team adds a Trello card with a '{CARD_DECLARES}' line, Alice on it")
        if world.mail:
            world.mail.uid = world.mail.mailbox.deliver(customer_mail())
            step(f"a customer writes to {MAILBOX}: {CUSTOMER_SUBJECT!r}")
            # An outsider's mail is a request of its own, whatever it quotes.
            wait_for(lambda: mail_request(ledger) not in (None, 1))
            step(
                f"the mail is a request of its own, REQ-{mail_request(ledger)}: an outsider's "
                "mention of OPS-7 links nothing. An operator links it:"
            )
            operator_links_the_mail(ledger)
            ok = wait_for(lambda: world.everywhere("alice") and world.replied(1))
            world.relay()
            step(
                "the mail joined the request: syncd tagged its thread owner-alice and replied"
                if ok
                else f"the mail has not joined the request yet: {owners_sentence(world.owners())}"
            )
        wait_for(lambda: linked(ledger) == world.items)
        step(f"owners now: {owners_sentence(world.owners())}")
        step("Alice hands acme/api#1 to Bob in GitHub")
        world.github.set_assignees("acme/api", 1, ["bob-ok"], by="alice-m")
        ok = wait_for(lambda: world.everywhere("bob") and world.replied(2))
        world.relay()
        step(
            owners_sentence(world.owners())
            if ok
            else "not everywhere yet: " + owners_sentence(world.owners())
        )
        step(f"Bob hands the Trello card to Carol with a comment: {DEMO_COMMAND!r}")
        world.trello.comment(world.card, DEMO_COMMAND, by="bobokafor")
        ok = wait_for(lambda: world.everywhere("carol") and world.replied(3))
        world.relay()
        step(
            owners_sentence(world.owners())
            if ok
            else "not everywhere yet: " + owners_sentence(world.owners())
        )
        if wait_for(lambda: bool(handoff_note(world))):
            step("the note, as syncd posted it on acme/api#1 in GitHub:")
            for line in handoff_note(world).splitlines():
                click.echo("    " + safe_text(line))
        # One more quiet cycle of every source: nothing may change, and syncd reads its own
        # replies, now in the mailbox, without taking them for requests.
        time.sleep(1.5)
    finally:
        daemon.stop.set()


# Bob's handoff, written as a comment on the Trello card (the source reads commands).
DEMO_COMMAND = "/assign @caroldiaz she runs the payments rota this week"


def handoff_note(world: World) -> str:
    """The latest handoff note syncd posted on acme/api#1, without its hidden marker."""
    notes = [
        c["body"] for c in world.github.comments("acme/api", 1) if "syncd:handoff:" in c["body"]
    ]
    return notes[-1].split("<!--")[0].strip() if notes else ""


def reply_body(reply: Received) -> str:
    """The text of one of syncd's replies (a single text/plain part)."""
    payload = reply.message.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def show_mail(mail: Mail, ledger: Path) -> None:
    step(
        f"the mailbox: the customer's thread carries the keywords {listing(mail.keywords() or ['(none)'])}"
    )
    items = ledger_count(ledger, "SELECT count(*) FROM links WHERE source = 'support'")
    step(
        f"the mailbox holds {len(mail.mailbox.uids())} messages: the customer's and "
        f"{mail.relayed} replies from syncd, which it read back as its own; "
        f"items in the ledger from the mailbox: {items}"
    )
    replies = mail.replies()
    step(
        f"syncd's replies, as the SMTP server received them: {len(replies)}, one per owner "
        "change of the thread"
    )
    for n, reply in enumerate(replies, 1):
        message = reply.message
        click.echo(
            safe_text(
                f"  {n}. to {', '.join(reply.rcpt_tos)}  Subject: {message['Subject']}"
                f"  In-Reply-To: {message['In-Reply-To']}"
            )
        )
        for line in reply_body(reply).splitlines()[:4]:
            click.echo(safe_text(f"       {line}".rstrip()))


def problems(world: World, ledger: Path) -> list[str]:
    """How the end of the story differs from what it should be; empty when it does not."""
    found = []
    if not world.everywhere("carol"):
        found.append(f"Carol is not the owner everywhere: {owners_sentence(world.owners())}")
    if DEMO_COMMAND.split(" ", 2)[2] not in handoff_note(world):
        found.append("Bob's note did not reach acme/api#1 in GitHub as a comment")
    if world.mail is None:
        return found
    replies = world.mail.replies()
    if len(replies) != len(HANDOFFS):
        found.append(f"{len(replies)} replies sent, expected {len(HANDOFFS)} (one per owner)")
    for person, reply in zip(HANDOFFS, replies, strict=False):
        message = reply.message
        first = reply_body(reply).split("\n", 1)[0]
        if f"({person}) now owns REQ-1" not in first:
            found.append(f"the reply announcing {person} says {first!r}")
        if message["In-Reply-To"] != f"<{CUSTOMER_MAIL_ID}>":
            found.append(f"the reply announcing {person} is not in the customer's thread")
    mailbox_items = ledger_count(ledger, "SELECT count(*) FROM links WHERE source = 'support'")
    if mailbox_items != 1 or linked(ledger) != world.items:
        found.append(
            f"the mailbox gave {mailbox_items} items (expected only the customer's thread, "
            "linked to REQ-1)"
        )
    # syncd's replies, delivered into the mailbox, are its own: skipped, not quarantined.
    quarantined = ledger_count(ledger, "SELECT count(*) FROM quarantine")
    if quarantined:
        found.append(f"{quarantined} messages were quarantined; syncd's replies should be skipped")
    return found


def run_demo(
    *,
    trace_http: Path | None = None,
    keep: bool = False,
    email: bool = True,
    show: Callable[[list[str]], None],
) -> int:
    work = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    run = f"{os.getpid()}-{time.time_ns()}"
    secrets = {
        "github": f"demo-gh-{run}",
        "jira": f"demo-jira-{run}",
        "trello_key": trello_emulator.DEFAULT_KEY,
        "trello_token": trello_emulator.DEFAULT_TOKEN,
    }
    skipped = None if email else "it was turned off with --no-email"
    if skipped is None:
        skipped = mail_servers.missing()
    stack = contextlib.ExitStack()
    stack.callback(_clean_up, work, keep)
    try:
        mail = None
        if skipped is None:
            try:
                mail = _start_mail(stack)
            except MailServerUnavailable as exc:
                skipped = str(exc)
            except (OSError, RuntimeError) as exc:
                # Installed but broken: the user asked for the whole story, so say so and
                # fail rather than quietly leave the mailbox out.
                step(f"the mail servers did not start: {str(exc)[-2000:]}")
                step("run `syncd demo --no-email` to leave the shared mailbox out")
                return 1
        world = World(
            GitHubEmulator(token=secrets["github"]),
            JiraEmulator(token=secrets["jira"]),
            TrelloEmulator(),
            {},
            mail=mail,
        )
        if world.mail:
            secrets["imap"] = world.mail.mailbox.password
        for name, value in secrets.items():
            os.environ[ENV[name]] = value
        for emulator in (world.github, world.jira, world.trello):
            emulator.start()
            stack.callback(emulator.stop)
        step(
            f"emulated GitHub {world.github.base_url}, Jira {world.jira.base_url}, "
            f"Trello {world.trello.base_url}"
        )
        if world.mail:
            step(
                f"the shared mailbox {MAILBOX} on a real Dovecot, "
                f"imap://127.0.0.1:{world.mail.mailbox.server.port}; syncd's replies go to an "
                f"SMTP server on 127.0.0.1:{world.mail.smtp.port} that keeps them"
            )
        else:
            step(f"SKIPPED the shared mailbox (email) part of the story: {skipped}")
        world.accounts = {pid: world.jira.add_user(v[0]) for pid, v in PEOPLE.items()}
        seed(world)
        step("seeded acme/api#1, support's bug report, assigned to Alice")
        config_path = work / "syncd.toml"
        config_path.write_text(config_text(world))
        code = run_daemon(
            config_path, trace_http, lambda daemon: story(world, daemon, work / "ledger.db")
        )
        ledger = str(work / "ledger.db")
        step("the ledger")
        show(["--ledger", ledger, "ls"])
        step("REQ-1, with every linked item and its timeline")
        show(["--ledger", ledger, "show", "REQ-1"])
        step("the handoff log")
        show(["--ledger", ledger, "history"])
        if world.mail:
            show_mail(world.mail, work / "ledger.db")
        counts = ", ".join(
            f"{e.service} {e.count()}" for e in (world.github, world.jira, world.trello)
        )
        step(f"HTTP requests the emulators served: {counts}")
        if skipped:
            step(f"SKIPPED the shared mailbox (email) part of the story: {skipped}")
        wrong = problems(world, work / "ledger.db")
        for problem in wrong:
            step(f"the story did not end as it should: {problem}")
        return 1 if wrong else code
    finally:
        stack.close()


def run_daemon(config_path: Path, trace_http: Path | None, story: Callable[[Daemon], None]) -> int:
    """Run the daemon here, its log in syncd.log beside the config, while `story` acts in
    the tools from another thread and stops the daemon at its end. The daemon's exit code."""
    with (config_path.parent / "syncd.log").open("w") as log_file:
        logs.configure(json=True, stream=log_file)
        http = HttpOptions(trace=TraceWriter(trace_http) if trace_http else None)
        daemon = Daemon(config_path, http=http)
        step("running the daemon: every source polls each second")
        threading.Thread(target=story, args=(daemon,), daemon=True).start()
        code = daemon.run()
    logs.configure()
    return code


def _start_mail(stack: contextlib.ExitStack) -> Mail:
    """Dovecot and the SMTP server, stopped (and their directories removed) by `stack`."""
    dovecot = mail_servers.start_dovecot()
    # The demo needs no shutdown log from Dovecot: killing its process group at once saves
    # the second a graceful stop takes.
    stack.callback(dovecot.stop, graceful=False)
    smtp = stack.enter_context(mail_servers.running_smtp())
    return Mail(dovecot.mailbox("support"), smtp)


def _program() -> str:
    """How to type syncd again: "syncd" when that is what the PATH finds, else the path
    this one was started by (scripts/dev runs .venv/bin/syncd)."""
    started = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("syncd")
    if started is None or started.name != "syncd" or (found and Path(found).resolve() == started):
        return "syncd"
    return shlex.quote(str(started))


def _clean_up(work: Path, keep: bool) -> None:
    for name in ENV.values():
        os.environ.pop(name, None)
    if keep:
        ledger = "--ledger " + shlex.quote(str(work / "ledger.db"))
        explore(work, [f"{ledger} {args}" for args in EXPLORE])
    else:
        shutil.rmtree(work, ignore_errors=True)


EXPLORE = ("ls --all", "show REQ-1", "history", "people", "status")


def explore(work: Path, commands: list[str]) -> None:
    """The end of a demo run with --keep: where it kept its directory, and the commands
    (each given after `syncd`) to explore the ledger and the daemon's log it left there."""
    step(f"kept {work}; to explore the ledger the story left, run:")
    for args in commands:
        click.echo(f"  {_program()} {args}")
    click.echo(f"  less {shlex.quote(str(work / 'syncd.log'))}    # the daemon's log")
