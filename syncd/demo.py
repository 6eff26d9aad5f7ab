"""`syncd demo`: a handoff propagated between tools, on loopback, with no credentials.

It starts emulated GitHub repositories, seeds a small story, runs the real daemon (the same
scheduler, ledger and write-back as `syncd run`) for a few cycles, and prints the ledger and
the handoff history. Everything lives in a temporary directory that is removed at the end
unless --keep is given.

The story: a checkout bug is filed in acme/api and assigned to Alice. The web team files
its own issue in acme/web and links the API issue. syncd folds both into one request and
gives the web issue the same owner. Then Alice hands the API issue to Bob in GitHub, and
syncd writes Bob back to the web issue.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from syncd import logs
from syncd.daemon import Daemon
from syncd.http import HttpOptions, TraceWriter
from syncd.sandbox.github import GitHubEmulator

TOKEN_ENV = "SYNCD_DEMO_GITHUB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
# Polls every second, so the whole story takes a few seconds.
CONFIG = """\
ledger = "ledger.db"

[daemon]
jitter = "0s"

[[sources]]
name = "api"
type = "github"
repo = "acme/api"
base_url = "{base_url}"
token = {{ env = "{token_env}" }}
interval = "1s"
write_spacing = 0

[[sources]]
name = "web"
type = "github"
repo = "acme/web"
base_url = "{base_url}"
token = {{ env = "{token_env}" }}
interval = "1s"
write_spacing = 0

[[people]]
id = "alice"
name = "Alice Moreau"
handles = {{ github = "alice-m" }}

[[people]]
id = "bob"
name = "Bob Okafor"
handles = {{ github = "bob-ok" }}
"""


def step(text: str) -> None:
    click.secho(f"==> {text}", bold=True, err=True)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def seed(gh: GitHubEmulator) -> tuple[int, int]:
    for repo in ("acme/api", "acme/web"):
        gh.add_repo(repo, collaborators=["alice-m", "bob-ok"])
    api = gh.create_issue(
        "acme/api",
        "Checkout fails for cards issued in the EU",
        "3-D Secure challenge never completes; payments time out after 30 s.",
        assignees=["alice-m"],
        user="support-desk",
    )
    web = gh.create_issue(
        "acme/web",
        "Checkout button spins forever",
        "Customers report the spinner never stops. Backend side: acme/api#1",
        user="web-lead",
    )
    gh.create_issue(
        "acme/web", "Dark mode toggle is unreadable", assignees=["bob-ok"], user="web-lead"
    )
    gh.create_pull_request("acme/api", "Retry 3-D Secure callback", "Fixes #1", user="alice-m")
    return api, web


def run_demo(
    *, trace_http: Path | None = None, keep: bool = False, show: Callable[[list[str]], None]
) -> int:
    work = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    log_path = work / "syncd.log"
    token = f"demo-{os.getpid()}-{time.time_ns()}"
    os.environ[TOKEN_ENV] = token
    gh = GitHubEmulator(token=token)
    try:
        gh.start()
        step(f"emulated GitHub on {gh.base_url}")
        api, web = seed(gh)
        step(
            "seeded acme/api#1 (owner alice-m), acme/web#1 (mentions acme/api#1, no owner), and two others"
        )
        config_path = work / "syncd.toml"
        config_path.write_text(CONFIG.format(base_url=gh.base_url, token_env=TOKEN_ENV))
        with log_path.open("w") as log_file:
            logs.configure(json=True, stream=log_file)
            http = HttpOptions(trace=TraceWriter(trace_http) if trace_http else None)
            daemon = Daemon(config_path, http=http)

            def story() -> None:
                ok = wait_for(lambda: gh.issue("acme/web", web)["assignees"] != [])
                step(
                    "syncd linked the two issues and wrote alice-m to acme/web#1"
                    if ok
                    else "acme/web#1 did not get an owner in time"
                )
                step("Alice hands acme/api#1 to Bob in GitHub")
                gh.set_assignees("acme/api", api, ["bob-ok"])
                ok = wait_for(
                    lambda: (
                        [a["login"] for a in gh.issue("acme/web", web)["assignees"]] == ["bob-ok"]
                    )
                )
                step(
                    "syncd wrote bob-ok back to acme/web#1"
                    if ok
                    else "the handoff did not reach acme/web#1 in time"
                )
                time.sleep(1.5)  # one more quiet cycle: nothing should change
                daemon.stop.set()

            step("running the daemon (polling every second)")
            threading.Thread(target=story, daemon=True).start()
            code = daemon.run()
        logs.configure()
        ledger = str(work / "ledger.db")
        step("the ledger")
        show(["--ledger", ledger, "ls"])
        step("REQ-1, with every linked item and its timeline")
        show(["--ledger", ledger, "show", "REQ-1"])
        step("the handoff log")
        show(["--ledger", ledger, "history"])
        web_owner = [a["login"] for a in gh.issue("acme/web", web)["assignees"]]
        step(f"acme/web#1 in GitHub is now assigned to {', '.join(web_owner) or 'nobody'}")
        requests = gh.count()
        step(f"{requests} HTTP requests in all; daemon log: {log_path if keep else '(removed)'}")
        return code if web_owner == ["bob-ok"] else 1
    finally:
        gh.stop()
        os.environ.pop(TOKEN_ENV, None)
        if keep:
            step(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
