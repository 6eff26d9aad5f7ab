"""The board in a real browser: Debian's Chromium driven by selenium through chromedriver.

The daemon runs as a process against the GitHub emulator, `syncd web` runs as a second
process on the same ledger, and headless Chromium opens the board. The test checks the lanes
against the ledger, hands an issue off through the emulator's REST API while the page is
open, and waits for the feed to show it without a reload. It also keeps a screenshot and
the page's weight and paint timing (written to board-metrics.json beside the screenshot;
reported, never asserted).

Set SYNCD_BOARD_SCREENSHOT=docs/board.png to refresh the README's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.sandbox.github import GitHubEmulator
from tests.daemonproc import daemon, github_source, wait_until, write_config

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "ghp_boardTestToken0123456789abcdef"
HOSTILE = '<script>alert("owned")</script><img src=x onerror=alert(1)>'

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (scripts/dev setup installs them as root)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",  # root in CI has no user namespace for the sandbox
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,860",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def gh(contract_trace) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(token=TOKEN, trace=contract_trace) as emu:
        for repo in ("acme/api", "acme/web"):
            emu.add_repo(repo, collaborators=["alice-gh", "bob-gh"])
        emu.create_issue("acme/api", "Checkout fails for EU cards", assignees=["alice-gh"])
        emu.create_issue("acme/api", "Slow search on the orders page", assignees=["bob-gh"])
        emu.create_issue("acme/api", HOSTILE)
        emu.create_issue("acme/web", "Spinner never stops", assignees=["alice-gh"])
        emu.create_issue("acme/web", "Old bug", assignees=["bob-gh"], state="closed")
        yield emu


@pytest.fixture
def board_web(tmp_path: Path, gh: GitHubEmulator) -> Iterator[tuple[str, Path]]:
    ledger = tmp_path / "ledger.db"
    body = (
        github_source("api", "acme/api", gh.base_url, "B_GH_TOKEN")
        + github_source("web", "acme/web", gh.base_url, "B_GH_TOKEN")
        + '\n[[people]]\nid = "alice"\nname = "Alice Moreau"\nhandles = { github = "alice-gh" }\n'
        + '\n[[people]]\nid = "bob"\nname = "Bob Stone"\nhandles = { github = "bob-gh" }\n'
    )
    config = write_config(tmp_path / "syncd.toml", body, ledger=ledger)
    env = {"B_GH_TOKEN": TOKEN}
    with daemon(config, env=env, log=tmp_path / "daemon.log"):
        wait_until(lambda: count(ledger, "SELECT count(*) FROM links") == 5, what="5 items")
        port = free_port()
        with (tmp_path / "web.log").open("wb") as log:
            web = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syncd",
                    "--ledger",
                    str(ledger),
                    "web",
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _up(url), what="syncd web")
            yield url, ledger
        finally:
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=20)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health").status_code == 200
    except httpx.HTTPError:
        return False


def count(ledger: Path, sql: str) -> int:
    if not ledger.exists():
        return 0
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        return int(con.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def key_of(ledger: Path, ref: str) -> str:
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT r.key FROM requests r JOIN links l ON l.request_id = r.id WHERE l.ref = ?",
            (ref,),
        ).fetchone()
    finally:
        con.close()
    return str(row[0])


def lanes_in_ledger(ledger: Path) -> dict[str, set[str]]:
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT key, coalesce(owner, '') FROM requests "
            "WHERE state IN ('open', 'in_progress', 'blocked')"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, set[str]] = {}
    for key, owner in rows:
        out.setdefault(owner, set()).add(key)
    return out


def lanes_on_page(driver: Any) -> dict[str, set[str]]:
    from selenium.webdriver.common.by import By

    out: dict[str, set[str]] = {}
    for lane in driver.find_elements(By.CSS_SELECTOR, "section.lane"):
        keys = {c.get_attribute("data-key") for c in lane.find_elements(By.CSS_SELECTOR, "li.card")}
        if keys:
            out[lane.get_attribute("data-owner")] = keys
    return out


PERFORMANCE_JS = """
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
return {
  document_bytes: nav.transferSize, document_body_bytes: nav.encodedBodySize,
  resources: res.map(r => ({name: r.name, bytes: r.transferSize, body: r.encodedBodySize})),
  first_paint_ms: paint['first-paint'] ?? null,
  first_contentful_paint_ms: paint['first-contentful-paint'] ?? null,
  response_start_ms: nav.responseStart,
  dom_content_loaded_ms: nav.domContentLoadedEventEnd,
  load_ms: nav.loadEventEnd,
};
"""


@needs_browser
def test_the_board_shows_the_ledger_and_a_live_handoff(browser, board_web, gh, tmp_path):
    from selenium.webdriver.common.by import By

    url, ledger = board_web
    browser.get(url + "/")
    # The lanes are the ledger's open requests by owner, the unowned lane included.
    expected = lanes_in_ledger(ledger)
    assert set(expected) == {"alice", "bob", ""}
    assert lanes_on_page(browser) == expected
    names = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "section.lane h2")]
    assert names[0].startswith("Unowned")
    assert any(n.startswith("Alice Moreau") for n in names)
    # A hostile title is shown as text: no script ran, no element was made from it.
    assert HOSTILE in browser.find_element(By.CSS_SELECTOR, 'section.lane[data-owner=""]').text
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    perf = browser.execute_script(PERFORMANCE_JS)

    browser.execute_script("window.__sameDocument = 'still here';")
    feed_before = len(browser.find_elements(By.CSS_SELECTOR, "#feed li"))
    # Alice hands the checkout bug to Bob in GitHub, the way any client would.
    r = httpx.patch(
        f"{gh.base_url}/repos/acme/api/issues/1",
        json={"assignees": ["bob-gh"]},
        headers={"authorization": f"Bearer {TOKEN}", "accept": "application/vnd.github+json"},
    )
    assert r.status_code == 200

    def newest_handoff() -> str | None:
        items = browser.find_elements(By.CSS_SELECTOR, "#feed li")
        if len(items) <= feed_before:
            return None
        return str(items[0].text)

    text = wait_until(newest_handoff, timeout=30, what="the handoff in the feed")
    assert key_of(ledger, "acme/api#1") in text
    assert "Alice Moreau" in text
    assert "Bob Stone" in text
    assert "in api" in text
    # The lanes follow without a reload: the request is now in Bob's lane, as in the ledger.
    moved = key_of(ledger, "acme/api#1")
    wait_until(
        lambda: moved in lanes_on_page(browser).get("bob", set()), timeout=15, what="the lanes"
    )
    assert lanes_on_page(browser) == lanes_in_ledger(ledger)
    assert browser.execute_script("return window.__sameDocument;") == "still here"
    assert browser.find_element(By.ID, "live").get_attribute("data-state") == "ok"
    # The CSP let the script run (the feed moved) and the page loaded nothing from elsewhere.
    assert all(res["name"].startswith(url) for res in perf["resources"])

    shot = tmp_path / "board.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("SYNCD_BOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
    perf["page_bytes"] = perf["document_bytes"] + sum(r["bytes"] for r in perf["resources"])
    report = Path(target).with_name("board-metrics.json") if target else tmp_path / "m.json"
    report.write_text(json.dumps(perf, indent=2))
    print("board page:", json.dumps(perf))


@needs_browser
def test_a_request_page_lists_its_items_with_tool_links(browser, board_web):
    from selenium.webdriver.common.by import By

    url, ledger = board_web
    browser.get(url + "/r/" + key_of(ledger, "acme/api#1"))
    link = browser.find_element(By.CSS_SELECTOR, "table.links a")
    assert link.text == "acme/api#1"
    assert link.get_attribute("href").startswith("http")
    kinds = [b.text for b in browser.find_elements(By.CSS_SELECTOR, ".timeline b")]
    assert "created" in kinds
    assert "owner_changed" in kinds
