"""Cross-reference keys found in free text: how items in different tools find each other.

A key is a tool-level name for one item, in one namespace per tool:

    github:acme/api#12   from "acme/api#12", "https://github.com/acme/api/issues/12", or the
                         same path on a GitHub Enterprise host (owner and repo lower-cased,
                         since GitHub treats them case-insensitively)
    jira:OPS-7           from a bare "OPS-7" or ".../browse/OPS-7" (project key upper-case,
                         2-10 characters)
    trello:AbCd1234      from "https://trello.com/c/AbCd1234[/slug]" (short links are
                         case-sensitive, so kept as written)
    req:42               from a ledger id, "REQ-42"

Adapters put the keys that name an item itself in Observation.keys and the keys found in its
text in Observation.mentions; the ledger links items whose keys meet. A stray match (say
"UTF-8" read as a Jira key) only matters if some linked item really has that key, so the
patterns favour finding real references over rejecting every look-alike.

Text comes from the sources and may be hostile, so the work is bounded: only the first
MAX_SCAN characters are read and at most MAX_KEYS keys are returned, in order of first
appearance, without duplicates. Every pattern has bounded repetition, so no input makes the
scan slower than linear in what is read.
"""

from __future__ import annotations

import re

MAX_SCAN = 64 * 1024  # characters read across all the texts of one item
MAX_KEYS = 50

# GitHub logins: letters, digits and single hyphens, at most 39 characters. Repository names
# also allow "_" and ".". The URL form accepts any host, because GitHub Enterprise Server
# serves issues at https://HOST/owner/repo/issues/n just as github.com does.
_OWNER = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"
_REPO = r"[A-Za-z0-9_.-]{1,100}"
_NUMBER = r"[0-9]{1,9}"
_PATTERN = re.compile(
    rf"""
    https?://[A-Za-z0-9.-]{{1,253}}(?::[0-9]{{1,5}})?
        /(?P<gh_url_owner>{_OWNER})/(?P<gh_url_repo>{_REPO})/issues/(?P<gh_url_n>{_NUMBER})
        (?![0-9])
  | https?://(?:www\.)?trello\.com/c/(?P<trello>[A-Za-z0-9]{{8}})(?![A-Za-z0-9])
  | /browse/(?P<jira_url_key>[A-Za-z][A-Za-z0-9_]{{1,9}})-(?P<jira_url_n>{_NUMBER})(?![0-9])
    # A bare owner/repo#n must not be the tail of a path or URL ("example.com/a/b#3").
  | (?<![A-Za-z0-9_./-])(?P<gh_owner>{_OWNER})/(?P<gh_repo>{_REPO})\#(?P<gh_n>{_NUMBER})
        (?![A-Za-z0-9_])
  | (?<![A-Za-z0-9_])(?i:REQ)-(?P<req>{_NUMBER})(?![A-Za-z0-9_])
    # Bare Jira keys are upper-case only: lower-case look-alikes ("utf-8") are far more
    # common in prose than real keys typed in lower case. A following "-" is allowed so
    # that branch names such as "OPS-7-fix-login" still count.
  | (?<![A-Za-z0-9_])(?P<jira_key>[A-Z][A-Z0-9_]{{1,9}})-(?P<jira_n>{_NUMBER})
        (?![A-Za-z0-9_])
    """,
    re.VERBOSE,
)


def github_key(repo: str, number: int) -> str:
    """The key of issue `number` in `repo` ("owner/name")."""
    return f"github:{repo.lower()}#{number}"


def github_issue_keys(repo: str, number: int) -> tuple[str, ...]:
    """The keys naming a GitHub issue itself, for Observation.keys.

    The URL and the short form of an issue reduce to the same key, so there is one.
    """
    return (github_key(repo, number),)


def _key(m: re.Match[str]) -> str | None:
    g = m.group
    if g("gh_url_n") is not None:
        n = int(g("gh_url_n"))
        return github_key(f"{g('gh_url_owner')}/{g('gh_url_repo')}", n) if n else None
    if g("gh_n") is not None:
        n = int(g("gh_n"))
        return github_key(f"{g('gh_owner')}/{g('gh_repo')}", n) if n else None
    if g("trello") is not None:
        return f"trello:{g('trello')}"
    if g("req") is not None:
        n = int(g("req"))
        return f"req:{n}" if n else None
    if g("jira_url_key") is not None:
        project, n = g("jira_url_key").upper(), int(g("jira_url_n"))
    else:
        project, n = g("jira_key"), int(g("jira_n"))
    # REQ-n is always a ledger id, never a Jira key, even in a /browse/ URL.
    if project == "REQ" or not n:
        return None
    return f"jira:{project}-{n}"


def extract_keys(*texts: str | None) -> tuple[str, ...]:
    """Keys referenced in `texts` (title, body...), in order of first appearance."""
    found: dict[str, None] = {}  # insertion-ordered set
    budget = MAX_SCAN
    for text in texts:
        if not text or budget <= 0:
            continue
        chunk = text[:budget]
        budget -= len(chunk)
        for m in _PATTERN.finditer(chunk):
            key = _key(m)
            if key is not None:
                found.setdefault(key)
                if len(found) >= MAX_KEYS:
                    return tuple(found)
    return tuple(found)
