"""Cross-references in free text: which items an item declares to be itself, and which it
merely mentions.

A key is a tool-level name for one item, in one namespace per tool:

    github:acme/api#12   from "acme/api#12", "https://github.com/acme/api/issues/12", or the
                         same path on a GitHub Enterprise host (owner and repo lower-cased,
                         since GitHub treats them case-insensitively)
    jira:OPS-7           from a bare "OPS-7" or ".../browse/OPS-7" (project key upper-case,
                         2 to 50 characters, as Jira allows: STREAMPIPES-651)
    trello:AbCd1234      from "https://trello.com/c/AbCd1234[/slug]" (short links are
                         case-sensitive, so kept as written)
    req:42               from a ledger id, "REQ-42"

Declared or mentioned. In real issue and mail text only about a quarter of the keys found name
the same piece of work; most name a related one ("blocked by OPS-7", "see acme/api#3") or are
no reference at all ("UTF-8", "ORA-00942"). Where a key sits tells them apart, so a key is
*declared* (the item says it is the same work, which is what links items) only when it is

  * the first key-only bracket at the start of the title: "[OPS-7] Login fails",
    "[Bug][acme/api#12] ..." (a colon form, "OPS-7: Login fails", only for a project a
    configured Jira source holds, since "ORA-00942: table does not exist" looks the same);
  * the first key after a declaring label that starts a line of the body: "Jira: OPS-7",
    "Tracked in https://.../browse/OPS-7", "Issue is synchronized with this [Jira Task](URL)",
    "This issue was originally created as ARROW-123". Only filler words ("issue", "this
    Jira Task", a Markdown link opener) may stand between label and key. DEFAULT_LABELS is
    the built-in list, from real usage; `[matching] declare_labels` adds to it.

Lines in code (fenced, indented, Jira {code}/{noformat}), quotes ("> ...", {quote}) and stack
traces never declare. Every other key is a *mention*, a relation kept and shown but never a
reason to merge; the phrase before it gives its kind where it says one ("blocked by",
"duplicate of", "sub-task of", "see also", or a "Related issues:" list).

Bare keys that are not keys. "UTF-8", "SHA-256" and "CVE-2021-44228" have the shape of a Jira
key. When the Jira project keys that configured sources hold are known (Rules.jira_projects),
only those count as bare keys; until then a denylist of common look-alikes (NOT_PROJECTS)
applies. /browse/ URLs always count: they cannot be anything else.

Text comes from the sources and may be hostile, so the work is bounded: only the first
MAX_SCAN characters are read and at most MAX_KEYS keys are returned, in order of first
appearance, without duplicates. Every pattern has bounded repetition and is applied one line
at a time, so no input makes the scan slower than linear in what is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

MAX_SCAN = 64 * 1024  # characters read across all the texts of one item
MAX_KEYS = 50

# GitHub logins: letters, digits and single hyphens, at most 39 characters. Repository names
# also allow "_" and ".". The URL form accepts any host, because GitHub Enterprise Server
# serves issues at https://HOST/owner/repo/issues/n just as github.com does.
_OWNER = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"
_REPO = r"[A-Za-z0-9_.-]{1,100}"
_NUMBER = r"[0-9]{1,9}"
# Jira project keys: a letter, then letters, digits or "_"; Jira allows up to 255 characters,
# 50 is far past any real one and keeps the scan cheap.
_PROJECT = r"[A-Za-z][A-Za-z0-9_]{1,49}"
_PATTERN = re.compile(
    rf"""
    https?://[A-Za-z0-9.-]{{1,253}}(?::[0-9]{{1,5}})?
        /(?P<gh_url_owner>{_OWNER})/(?P<gh_url_repo>{_REPO})/issues/(?P<gh_url_n>{_NUMBER})
        (?![0-9])
  | https?://(?:www\.)?trello\.com/c/(?P<trello>[A-Za-z0-9]{{8}})(?![A-Za-z0-9])
    # The site and path before /browse/ belong to the match, so that it starts where the
    # URL does ("Jira: https://...", with nothing but the label before it).
  | (?:https?://[A-Za-z0-9.-]{{1,253}}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._~%-]{{1,100}}){{0,5}})?
        /browse/(?P<jira_url_key>{_PROJECT})-(?P<jira_url_n>{_NUMBER})(?![0-9])
    # A bare owner/repo#n must not be the tail of a path or URL ("example.com/a/b#3").
  | (?<![A-Za-z0-9_./-])(?P<gh_owner>{_OWNER})/(?P<gh_repo>{_REPO})\#(?P<gh_n>{_NUMBER})
        (?![A-Za-z0-9_])
  | (?<![A-Za-z0-9_])(?i:REQ)-(?P<req>{_NUMBER})(?![A-Za-z0-9_])
    # Bare Jira keys are upper-case only: lower-case look-alikes ("utf-8") are far more
    # common in prose than real keys typed in lower case. A following "-" is allowed so
    # that branch names such as "OPS-7-fix-login" still count.
  | (?<![A-Za-z0-9_])(?P<jira_key>[A-Z][A-Z0-9_]{{1,49}})-(?P<jira_n>{_NUMBER})
        (?![A-Za-z0-9_])
    """,
    re.VERBOSE,
)

# Upper-case words followed by "-<digits>" in prose, logs and specs that are no Jira project:
# encodings, standards, hashes and ciphers, vulnerability ids, error codes, proposal series,
# and the placeholders of documentation. Used only while the real project keys are unknown.
NOT_PROJECTS = frozenset(
    [
        "UTF",
        "UCS",
        "ISO",
        "IEC",
        "IEEE",
        "ANSI",
        "ECMA",
        "DIN",
        "EN",
        "NIST",
        "FIPS",
        "SP",
        "RFC",
        "BCP",
        "STD",
        "CP",
        "WIN",
        "X86",
        "ARM",
        "SHA",
        "MD",
        "AES",
        "DES",
        "RSA",
        "DSA",
        "ECDSA",
        "HMAC",
        "PBKDF",
        "TLS",
        "SSL",
        "DTLS",
        "HTTP",
        "HTTPS",
        "SSH",
        "SFTP",
        "IPV",
        "SQL",
        "USB",
        "DDR",
        "CVE",
        "CWE",
        "CAPEC",
        "GHSA",
        "OSV",
        "ORA",
        "ERR",
        "ERROR",
        "PLS",
        "SQLSTATE",
        "TNS",
        "IMP",
        "EXP",
        "RMAN",
        "OGG",
        "KIP",
        "KEP",
        "PEP",
        "JEP",
        "JSR",
        "TIP",
        "FLIP",
        "SPIP",
        "HIP",
        "GPT",
        "COVID",
        "BERT",
        "LLAMA",
        "PROJ",
        "PROJECT",
        "PRJ",
        "KEY",
        "ABC",
        "XYZ",
        "XXX",
        "FOO",
        "BAR",
        "BAZ",
        "EXAMPLE",
        "TEST",
        "DEMO",
        "TICKET",
        "ISSUE",
        "JIRA",
        "MYPROJ",
    ]
)

# Labels that declare identity at the start of a line, from real issue, ticket and mail text.
# A bare tool name ("Jira") is followed by a colon or only filler before the key, so "Jira is
# down, see OPS-7" declares nothing.
DEFAULT_LABELS: tuple[str, ...] = (
    "Jira",
    "JIRA Issue",
    "Jira ticket",
    "GitHub",
    "GitHub issue",
    "Trello",
    "Trello card",
    "Tracked in",
    "Tracked as",
    "Same as",
    "Mirror of",
    "Mirrors",
    "Mirrored in",
    "Mirrored from",
    "Migrated to",
    "Migrated from",
    "Imported from",
    "Synchronized with",
    "Synced with",
    "Originally created as",
    "Originally filed as",
    "Request",
    # Unito's footer: "┆Issue is synchronized with this Jira Story" then "┆Issue Number: X-1".
    "Issue Number",
)

# Relation kinds (Observation.relation_kinds): the phrase before a key, in the same sentence.
_KIND_PHRASES: tuple[tuple[str, str], ...] = (
    ("blocked_by", r"blocked\s+by|depends\s+on|dependent\s+on|requires|waiting\s+(?:on|for)"),
    ("blocks", r"blocks|blocking|is\s+blocking|prerequisite\s+(?:of|for)"),
    ("duplicate_of", r"duplicate\s+of|duplicates|dup(?:e)?\s+of|closed\s+as\s+a?\s*dup\w{0,6}"),
    (
        "parent",
        r"sub-?task\s+of|child\s+of|part\s+of|belongs\s+to|parent(?:\s+(?:issue|ticket|task))?:"
        r"|epic:|in\s+epic",
    ),
    ("child", r"sub-?tasks?:|child\s+(?:issues?|tasks?):|parent\s+of|split\s+into"),
    (
        "related",
        r"see(?:\s+also)?|related(?:\s+to)?|relates\s+to|cf\.|similar\s+to|mentioned\s+in"
        r"|follow-?up\s+(?:of|to|from)|duplicated\s+by|caused\s+by|causes|regression\s+(?:of|from)",
    ),
)
_KIND = re.compile(
    "|".join(
        rf"(?P<{kind}>(?<![A-Za-z0-9_-])(?:{phrase})(?![A-Za-z0-9_]))"
        for kind, phrase in _KIND_PHRASES
    ),
    re.IGNORECASE,
)
# A phrase's kind covers the keys that follow it in its sentence, this far at most.
_KIND_REACH = 120
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)")
# A heading that opens a list of related items ("Related issues:", "### See also").
_LIST_HEADING = re.compile(
    r"^\s{0,3}(?:#{1,6}\s{0,3})?[*_]{0,3}\s{0,3}"
    r"(?P<what>related(?:\s+(?:issues?|tickets?|links?|prs?|pull\s+requests?|work))?"
    r"|see\s+also|links|references|dependencies|depends\s+on|blocked\s+by|blocks"
    r"|duplicates?|sub-?tasks?|child\s+issues)"
    r"\s{0,3}[*_]{0,3}\s{0,3}:?\s{0,3}[*_]{0,3}\s{0,3}$",
    re.IGNORECASE,
)
_LIST_KINDS = {
    "depends on": "blocked_by",
    "blocked by": "blocked_by",
    "blocks": "blocks",
    "duplicate": "duplicate_of",
    "duplicates": "duplicate_of",
    "subtask": "child",
    "subtasks": "child",
    "sub-task": "child",
    "sub-tasks": "child",
    "child issues": "child",
}

# What a line may start with before its label: indentation, list bullets, Unito's "┆", a
# "Note:", emphasis, and a subject ("This issue was", "Issue is") before a phrase label.
_LEAD_IN = (
    r"^[ ]{0,3}(?:(?:[-*+\u2022\u2506|]|[0-9]{1,3}[.)])[ \t]{1,4}){0,2}"
    r"(?:\u2506[ \t]{0,4})?[*_]{0,3}(?:note[*_]{0,3}:[ \t]{0,4}[*_]{0,3})?"
    r"(?:(?:(?:this|the)[ \t]{1,4})?(?:issue|ticket|bug|card|task|story|request|item)"
    r"[ \t]{1,4}(?:(?:is|was|has[ \t]{1,4}been|will[ \t]{1,4}be)[ \t]{1,4})?(?:also[ \t]{1,4})?)?"
)
# What may stand between a label and its key: a colon, emphasis, filler words naming the
# tool or the kind of item, and a Markdown or angle-bracket link opener.
_GAP = re.compile(
    r"[ \t]{0,4}[*_]{0,3}[ \t]{0,4}:?[ \t]{0,4}[*_]{0,3}[ \t]{0,4}"
    r"(?:(?:this|the|a|an|our|its|internal|upstream|jira|github|trello|cloud|server|issue|"
    r"issues|ticket|task|story|bug|card|board|request|tracker|project|repo|repository|"
    r"enterprise|as|at|in|on)[ \t:]{1,4}){0,6}"
    r"(?:\[[^\]\n]{0,60}\]\(|\[|<)?[ \t]{0,4}",
    re.IGNORECASE,
)
_TILDE_FENCE = re.compile(r"^[ ]{0,3}~~~")
_WIKI_BLOCK = re.compile(r"\{(?:code|noformat|quote)(?::[^}\n]{0,200})?\}", re.IGNORECASE)
# Lines that are not prose: quotes, indented code, and stack-trace frames.
_NOT_PROSE = re.compile(
    r"^(?:[ ]{0,3}>|bq\.\s|\t|[ ]{4}|\s{0,8}(?:at\s+[\w$.<>]{1,200}\(|File\s+\"|Traceback\b"
    r"|Caused\s+by:|\.\.\.\s+[0-9]{1,6}\s+more\b))",
    re.IGNORECASE,
)
_TITLE_BRACKET = re.compile(r"[ \t]{0,8}\[([^\[\]\n]{1,300})\]")
_TITLE_COLON = re.compile(r"[ \t]{0,8}([A-Z][A-Z0-9_]{1,49}-[0-9]{1,9}|(?i:REQ)-[0-9]{1,9}):\s")
_MAX_TITLE_TAGS = 4
_URL_KINDS = ("gh_url_n", "trello", "jira_url_n")


@dataclass(frozen=True)
class Rules:
    """What counts as a declaration and as a key; see the module docstring."""

    labels: tuple[str, ...] = DEFAULT_LABELS
    # Project keys of the configured Jira sources, upper-case; empty while unknown.
    jira_projects: frozenset[str] = frozenset()

    @classmethod
    def build(cls, extra_labels: Iterable[str] = (), jira_projects: Iterable[str] = ()) -> Rules:
        labels = dict.fromkeys(DEFAULT_LABELS)
        for label in extra_labels:
            label = " ".join(label.split()).rstrip(":").strip()
            if label:
                labels.setdefault(label)
        return cls(tuple(labels), frozenset(p.upper() for p in jira_projects))


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class References:
    """The keys an item's text names, apart from its own."""

    declared: tuple[str, ...] = ()  # the same work: what links
    mentions: tuple[str, ...] = ()  # every other key: relations, never merged
    # mention key -> "blocked_by", "blocks", "duplicate_of", "parent", "child" or "related"
    relation_kinds: tuple[tuple[str, str], ...] = field(default=())


def github_key(repo: str, number: int) -> str:
    """The key of issue `number` in `repo` ("owner/name")."""
    return f"github:{repo.lower()}#{number}"


def github_issue_keys(repo: str, number: int) -> tuple[str, ...]:
    """The keys naming a GitHub issue itself, for Observation.keys.

    The URL and the short form of an issue reduce to the same key, so there is one.
    """
    return (github_key(repo, number),)


def jira_project(key: str) -> str | None:
    """ "OPS" for "jira:OPS-7" (or "OPS-7"); None for other keys."""
    bare = key.removeprefix("jira:")
    project, sep, number = bare.rpartition("-")
    return project if sep and number.isdigit() and project[:1].isalpha() else None


def _key(m: re.Match[str], rules: Rules) -> str | None:
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
        if rules.jira_projects:
            if project not in rules.jira_projects:
                return None
        elif project in NOT_PROJECTS:
            return None
    # REQ-n is always a ledger id, never a Jira key, even in a /browse/ URL.
    if project == "REQ" or not n:
        return None
    return f"jira:{project}-{n}"


def item_key(url: str) -> str | None:
    """The key of an item URL (a GitHub issue, a Jira /browse/ page, a Trello card), or None
    for any other URL: what a Jira remote link or a Trello attachment points at."""
    url = url.strip()[:2048]
    if not url.lower().startswith(("https://", "http://")) or any(c.isspace() for c in url):
        return None
    m = _PATTERN.search(url)
    if m is None or not any(m.group(k) is not None for k in _URL_KINDS):
        return None  # no item URL (a bare key in a query string is not one)
    if m.group("jira_url_n") is None and m.start() != 0:
        return None
    if url[m.end() :][:1] not in ("", "/", "?", "#"):
        return None
    return _key(m, DEFAULT_RULES)


def _single_key(text: str, rules: Rules) -> str | None:
    m = _PATTERN.fullmatch(text.strip())
    return _key(m, rules) if m else None


# Labels ending so need no colon before the key ("Tracked in OPS-7"); any other label is a
# noun ("Jira", "Request", a configured "Ticket") and needs one ("Jira: OPS-7"), so that
# "GitHub issue acme/api#3 is blocked by OPS-7" declares nothing.
_PHRASE_ENDS = frozenset({"in", "as", "of", "to", "from", "with", "by", "mirrors"})


@lru_cache(maxsize=16)
def _declaring_line(labels: tuple[str, ...]) -> re.Pattern[str]:
    def alternation(group: list[str]) -> str:
        escaped = (r"[ \t]{1,4}".join(map(re.escape, label.split())) for label in group)
        return "|".join(sorted(escaped, key=len, reverse=True)) or "(?!)"

    phrases = [label for label in labels if label.split()[-1].lower() in _PHRASE_ENDS]
    nouns = [label for label in labels if label not in phrases]
    return re.compile(
        rf"{_LEAD_IN}(?:(?P<phrase>{alternation(phrases)})|(?P<noun>{alternation(nouns)}))"
        r"(?![A-Za-z0-9_-])",
        re.IGNORECASE,
    )


def title_declaration(title: str, rules: Rules = DEFAULT_RULES) -> str | None:
    """The key a title declares: its first key-only bracket among the leading bracket tags
    ("[Bug][OPS-7] ..."), or a known project's key as the whole first token ("OPS-7: ...")."""
    pos = 0
    for _ in range(_MAX_TITLE_TAGS):
        m = _TITLE_BRACKET.match(title, pos)
        if m is None:
            break
        key = _single_key(m.group(1), rules)
        if key is not None:
            return key
        pos = m.end()
    m = _TITLE_COLON.match(title)
    if m is not None:
        token = m.group(1)
        if token.upper().startswith("REQ-"):
            return _single_key(token, rules)
        if jira_project(token) in rules.jira_projects:
            return _single_key(token, rules)
    return None


class _Scan:
    """Keys of one item in order of first appearance, each declared or with its kind."""

    def __init__(self, rules: Rules, own: Iterable[str]) -> None:
        self.rules = rules
        self.own = frozenset(own)
        self.declared: dict[str, None] = {}
        self.mentioned: dict[str, str | None] = {}
        self.budget = MAX_SCAN

    @property
    def full(self) -> bool:
        # Each list has its own bound, so a flood of mentions cannot push out a declaration.
        return len(self.declared) >= MAX_KEYS and len(self.mentioned) >= MAX_KEYS

    def declare(self, key: str) -> None:
        if key not in self.own and len(self.declared) < MAX_KEYS:
            self.declared.setdefault(key)
            self.mentioned.pop(key, None)

    def mention(self, key: str, kind: str | None) -> None:
        if key in self.own or key in self.declared:
            return
        if key in self.mentioned:
            if self.mentioned[key] is None and kind is not None:
                self.mentioned[key] = kind
        elif len(self.mentioned) < MAX_KEYS:
            self.mentioned[key] = kind

    def take(self, text: str | None) -> str:
        if not text or self.budget <= 0:
            return ""
        chunk = text[: self.budget]
        self.budget -= len(chunk)
        return chunk

    def line(self, line: str, prose: bool, list_kind: str | None) -> None:
        """Record the keys of one line; a prose line may declare its first key."""
        skip_at = -1
        if prose:
            label = _declaring_line(self.rules.labels).match(line)
            if label is not None:
                m = _PATTERN.search(line, label.end())
                if (
                    m is not None
                    and _GAP.fullmatch(line, label.end(), m.start())
                    and (label.group("phrase") or ":" in line[label.end() : m.start()])
                ):
                    key = _key(m, self.rules)
                    if key is not None:
                        self.declare(key)
                        skip_at = m.start()
        phrases = [(m.end(), m.lastgroup) for m in _KIND.finditer(line)]
        breaks = [m.start() for m in _SENTENCE_END.finditer(line)]
        # One pass over keys, phrases and sentence ends, all in position order.
        pi = bi = 0
        kind: str | None = None
        kind_end = -1
        for m in _PATTERN.finditer(line):
            if self.full:
                return
            pos = m.start()
            while pi < len(phrases) and phrases[pi][0] <= pos:
                kind_end, kind = phrases[pi]
                pi += 1
            while bi < len(breaks) and breaks[bi] < pos:
                if breaks[bi] >= kind_end:
                    kind = None
                bi += 1
            if m.start() == skip_at:
                continue
            key = _key(m, self.rules)
            if key is not None:
                near = kind if kind is not None and pos - kind_end <= _KIND_REACH else None
                self.mention(key, near or list_kind)

    def text(self, text: str | None, *, declaring: bool) -> None:
        fenced = False
        wiki = False
        list_kind: str | None = None
        for line in self.take(text).split("\n"):
            if self.full:
                return
            # A line with ``` opens or closes code, wherever it stands: a code span may run
            # over several lines too.
            fences = line.count("```") + (1 if _TILDE_FENCE.match(line) else 0)
            toggles = len(_WIKI_BLOCK.findall(line))
            inside = fenced or wiki or toggles > 0 or fences > 0
            if fences % 2:
                fenced = not fenced
            if toggles % 2:
                wiki = not wiki
            if not line.strip():
                list_kind = None
                continue
            heading = _LIST_HEADING.match(line)
            if heading is not None:
                what = " ".join(heading.group("what").lower().split())
                list_kind = _LIST_KINDS.get(what, "related")
                continue
            prose = declaring and not inside and not _NOT_PROSE.match(line)
            self.line(line, prose, list_kind)

    def result(self) -> References:
        return References(
            declared=tuple(self.declared),
            mentions=tuple(self.mentioned),
            relation_kinds=tuple((k, v) for k, v in self.mentioned.items() if v is not None),
        )


def read_references(
    title: str | None,
    body: str | None,
    rules: Rules = DEFAULT_RULES,
    *,
    own: Iterable[str] = (),
    declaring: bool = True,
) -> References:
    """The keys an item declares and mentions, from its title and body.

    `own` are the item's own keys, left out of both. With `declaring` False (an author who
    may not declare), every key is a mention.
    """
    scan = _Scan(rules, own)
    title_text = scan.take(title)
    if declaring and title_text:
        key = title_declaration(title_text, rules)
        if key is not None:
            scan.declare(key)
    scan.line(title_text.replace("\n", " "), prose=False, list_kind=None)
    scan.text(body, declaring=declaring)
    return scan.result()


def relation_kind(phrase: str) -> str | None:
    """The relation kind a phrase names ("is blocked by", "mentioned in"), or None: how a
    Jira remote link's `relationship` is read."""
    m = _KIND.search(phrase[:200])
    return m.lastgroup if m else None


def with_links(
    refs: References,
    declared: Iterable[str] = (),
    related: Iterable[tuple[str, str | None]] = (),
    own: Iterable[str] = (),
) -> References:
    """`refs` plus what a tool's own link fields say: keys declared (a Jira remote link, a
    Trello attachment) and keys related with their kind where known."""
    mine = frozenset(own)
    out = dict.fromkeys(refs.declared)
    for key in declared:
        if key not in mine and len(out) < MAX_KEYS:
            out.setdefault(key)
    kinds = dict(refs.relation_kinds)
    mentions = dict.fromkeys(k for k in refs.mentions if k not in out)
    for key, kind in related:
        if key in mine or key in out or (key not in mentions and len(mentions) >= MAX_KEYS):
            continue
        mentions.setdefault(key)
        if kind is not None:
            kinds[key] = kind  # a tool's own link type says more than the prose around a key
    return References(
        tuple(out),
        tuple(mentions),
        tuple((k, kinds[k]) for k in mentions if k in kinds),
    )


def extract_keys(*texts: str | None) -> tuple[str, ...]:
    """Every key referenced in `texts` (title, body...), declared or not, in order of first
    appearance: the any-mention view."""
    scan = _Scan(DEFAULT_RULES, ())
    for text in texts:
        for line in scan.take(text).split("\n"):
            if len(scan.mentioned) >= MAX_KEYS:
                return tuple(scan.mentioned)
            scan.line(line, prose=False, list_kind=None)
    return tuple(scan.mentioned)
