"""`syncd demo`: handoffs propagated between tools, on loopback, with no credentials.

It starts emulated GitHub, Jira and Trello, seeds a small story, runs the real daemon (the
same scheduler, ledger and write-back as `syncd run`) and prints the ledger and the handoff
history. Everything lives in a temporary directory that is removed at the end unless --keep
is given.

The story. Checkout fails for some cards: support files acme/api#1 and assigns Alice; the
web team files acme/web#1 and links the API issue; ops opens OPS-7 in Jira with a link to it;
later the account team puts a Trello card on its board that mentions OPS-7. syncd folds all
four into one request and gives every item Alice. Then Alice hands the API issue to Bob in
GitHub, and Bob appears in acme/web, Jira and Trello; then Bob hands the card to Carol in
Trello, and Carol appears in GitHub and Jira.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from syncd import logs
from syncd.daemon import Daemon
from syncd.errors import LedgerError
from syncd.http import HttpOptions, TraceWriter
from syncd.ledger import Ledger
from syncd.sandbox import jira as jira_emulator
from syncd.sandbox import trello as trello_emulator
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator, adf, link, text
from syncd.sandbox.trello import TrelloEmulator

# Names of environment variables, not secrets: the demo's tokens are made up per run.
ENV = {
    "github": "SYNCD_DEMO_GITHUB_TOKEN",
    "jira": "SYNCD_DEMO_JIRA_TOKEN",
    "trello_key": "SYNCD_DEMO_TRELLO_KEY",
    "trello_token": "SYNCD_DEMO_TRELLO_TOKEN",
}
PEOPLE = {  # id: (name, github login, trello username)
    "alice": ("Alice Moreau", "alice-m", "alicemoreau"),
    "bob": ("Bob Okafor", "bob-ok", "bobokafor"),
    "carol": ("Carol Diaz", "carol-d", "caroldiaz"),
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
"""
PERSON = """
[[people]]
id = "{id}"
name = "{name}"
handles = {{ github = "{login}", jira = "{account}", trello = "{username}" }}
"""


def step(message: str) -> None:
    click.secho(f"==> {message}", bold=True, err=True)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@dataclass
class World:
    github: GitHubEmulator
    jira: JiraEmulator
    trello: TrelloEmulator
    accounts: dict[str, str]  # person id -> Jira accountId
    board: str = ""
    card: str = ""

    def owners(self) -> dict[str, str]:
        """Who each tool shows as owner of the story's four items."""
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
        return out

    def everywhere(self, person: str) -> bool:
        owners = self.owners()
        return len(owners) == 4 and set(owners.values()) == {person}


def seed(world: World) -> None:
    gh = world.github
    for repo in ("acme/api", "acme/web"):
        gh.add_repo(repo, collaborators=[v[1] for v in PEOPLE.values()])
    gh.create_issue(
        "acme/api",
        "Checkout fails for cards issued in the EU",
        "3-D Secure challenge never completes; payments time out after 30 s.",
        assignees=["alice-m"],
        user="support-desk",
    )
    gh.create_issue(
        "acme/web",
        "Checkout button spins forever",
        "Customers report the spinner never stops. Backend side: acme/api#1",
        user="web-lead",
    )
    gh.create_issue("acme/web", "Dark mode toggle is unreadable", assignees=["bob-ok"])
    gh.create_pull_request("acme/api", "Retry 3-D Secure callback", "Fixes #1", user="alice-m")
    world.jira.add_project("OPS", "Operations", next_number=7)
    world.jira.create_issue(
        "OPS",
        "EU card payments failing at checkout",
        adf(
            [
                text("Engineering tracks it in "),
                link("acme/api#1", "https://github.com/acme/api/issues/1"),
            ]
        ),
        assignee=world.accounts["alice"],
    )
    world.board = world.trello.add_board(
        "Key accounts", members=[v[2] for v in PEOPLE.values()], lists=("To Do", "Doing", "Done")
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
    for pid, (name, login, username) in PEOPLE.items():
        text_ += PERSON.format(
            id=pid, name=name, login=login, account=world.accounts[pid], username=username
        )
    return text_


def linked(ledger: Path) -> int:
    """Items linked to REQ-1, read the way an operator would: from the ledger file."""
    try:
        with Ledger(ledger, readonly=True) as led:
            return int(
                led.conn.execute("SELECT count(*) FROM links WHERE request_id = 1").fetchone()[0]
            )
    except LedgerError:
        return 0  # not created yet


def story(world: World, daemon: Daemon, ledger: Path) -> None:
    """What the people in the story do, while the daemon runs in the main thread."""
    try:
        if wait_for(lambda: world.owners()["GitHub acme/web#1"] == "alice"):
            step("syncd linked acme/api#1, acme/web#1 and OPS-7, and gave acme/web#1 to Alice")
        world.card = world.trello.create_card(
            world.board,
            "Doing",
            "Acme Corp: card payments failing",
            "Escalated to ops as OPS-7.",
            members=["alicemoreau"],
            by="alicemoreau",
        )
        step("the account team adds a Trello card that mentions OPS-7, with Alice on it")
        wait_for(lambda: linked(ledger) == 4)
        step(f"owners now: {world.owners()}")
        step("Alice hands acme/api#1 to Bob in GitHub")
        world.github.set_assignees("acme/api", 1, ["bob-ok"])
        ok = wait_for(lambda: world.everywhere("bob"))
        step(
            ("Bob is the owner everywhere: " if ok else "not everywhere yet: ")
            + str(world.owners())
        )
        step("Bob hands the Trello card to Carol")
        world.trello.set_members(world.card, ["caroldiaz"], by="bobokafor")
        ok = wait_for(lambda: world.everywhere("carol"))
        step(
            ("Carol is the owner everywhere: " if ok else "not everywhere yet: ")
            + str(world.owners())
        )
        time.sleep(1.5)  # one more quiet cycle of every source: nothing may change
    finally:
        daemon.stop.set()


def run_demo(
    *, trace_http: Path | None = None, keep: bool = False, show: Callable[[list[str]], None]
) -> int:
    work = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    log_path = work / "syncd.log"
    run = f"{os.getpid()}-{time.time_ns()}"
    secrets = {
        "github": f"demo-gh-{run}",
        "jira": f"demo-jira-{run}",
        "trello_key": trello_emulator.DEFAULT_KEY,
        "trello_token": trello_emulator.DEFAULT_TOKEN,
    }
    for name, value in secrets.items():
        os.environ[ENV[name]] = value
    world = World(
        GitHubEmulator(token=secrets["github"]),
        JiraEmulator(token=secrets["jira"]),
        TrelloEmulator(),
        {},
    )
    try:
        for emulator in (world.github, world.jira, world.trello):
            emulator.start()
        step(
            f"emulated GitHub {world.github.base_url}, Jira {world.jira.base_url}, "
            f"Trello {world.trello.base_url}"
        )
        world.accounts = {pid: world.jira.add_user(v[0]) for pid, v in PEOPLE.items()}
        seed(world)
        step("seeded acme/api#1 (Alice), acme/web#1 (mentions it), OPS-7 (links it) and others")
        config_path = work / "syncd.toml"
        config_path.write_text(config_text(world))
        with log_path.open("w") as log_file:
            logs.configure(json=True, stream=log_file)
            http = HttpOptions(trace=TraceWriter(trace_http) if trace_http else None)
            daemon = Daemon(config_path, http=http)
            step("running the daemon: every source polls each second")
            threading.Thread(
                target=story, args=(world, daemon, work / "ledger.db"), daemon=True
            ).start()
            code = daemon.run()
        logs.configure()
        ledger = str(work / "ledger.db")
        step("the ledger")
        show(["--ledger", ledger, "ls"])
        step("REQ-1, with every linked item and its timeline")
        show(["--ledger", ledger, "show", "REQ-1"])
        step("the handoff log")
        show(["--ledger", ledger, "history"])
        counts = {e.service: e.count() for e in (world.github, world.jira, world.trello)}
        step(f"HTTP requests served: {counts}; daemon log: {log_path if keep else '(removed)'}")
        return code if world.everywhere("carol") else 1
    finally:
        for emulator in (world.github, world.jira, world.trello):
            emulator.stop()
        for name in ENV.values():
            os.environ.pop(name, None)
        if keep:
            step(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
