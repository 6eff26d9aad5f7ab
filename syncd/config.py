"""The configuration file: a TOML document validated by pydantic.

Every problem is reported as one line naming the field path, e.g.
`sources[1] (ops).token: set exactly one of env, file or credential`, so an admin can fix
them all in one pass. Secrets are never read inline from the file: they come from an
environment variable, a file, or a systemd credential, and are registered for redaction as
soon as they are read.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import regex
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from syncd.durations import parse_duration
from syncd.errors import ConfigError
from syncd.models import State
from syncd.redact import register_secret

DEFAULT_CONFIG_PATH = "/etc/syncd/syncd.toml"
DEFAULT_LEDGER = "/var/lib/syncd/ledger.db"

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_PERSON_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def default_ledger_path() -> str:
    # systemd sets STATE_DIRECTORY for StateDirectory=; honour it so the unit needs no path.
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        return str(Path(state_dir.split(":")[0]) / "ledger.db")
    return DEFAULT_LEDGER


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """Where a secret lives. Exactly one of the three must be set."""

    env: str | None = None
    file: Path | None = None
    credential: str | None = Field(
        default=None, description="name of a systemd credential, read from $CREDENTIALS_DIRECTORY"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                'secrets are not read inline; use { env = "VAR" }, { file = "/path" } '
                'or { credential = "name" }'
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if sum(x is not None for x in (self.env, self.file, self.credential)) != 1:
            raise ValueError("set exactly one of env, file or credential")
        return self

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return f"systemd credential {self.credential}"

    def resolve(self) -> SecretStr:
        """Read the secret now. Raises ValueError with a message that never holds the value."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set or empty")
        else:
            if self.file is not None:
                path = self.file
            else:
                cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
                if not cred_dir:
                    raise ValueError(
                        f"credential {self.credential!r} needs $CREDENTIALS_DIRECTORY "
                        "(set by systemd's LoadCredential=)"
                    )
                path = Path(cred_dir) / str(self.credential)
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
            if not value:
                raise ValueError(f"secret file {path} is empty")
        register_secret(value)
        return SecretStr(value)


class SecretsUnreadable(ValueError):
    """Secrets that could not be read, one "field.path: why" line each; never a value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class SourceConfig(Strict):
    """Settings every source has. Each adapter extends this with its own fields."""

    name: str
    type: str
    interval: Duration = timedelta(seconds=60)
    enabled: bool = True
    # Native state name (lower-cased) -> canonical state; overrides the adapter's defaults.
    states: dict[str, State] = Field(default_factory=dict)
    # The secret the tool signs its webhooks with (GitHub and Jira: the hook's secret; Trello:
    # the API key's application secret). Without it, hooks for this source are refused.
    webhook_secret: SecretRef | None = None
    # Trello signs the body followed by the callback URL exactly as registered, so the URL
    # the tool calls (through any reverse proxy) must be known. Trello only.
    webhook_url: str | None = None
    # Secrets resolved at load time; never serialised.
    _secrets: dict[str, SecretStr] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.' (at most 63)")
        return v

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return v

    @field_validator("states", mode="before")
    @classmethod
    def _lower_keys(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k).lower(): val for k, val in v.items()}
        return v

    @model_validator(mode="after")
    def _trello_callback(self) -> SourceConfig:
        if self.type == "trello" and self.webhook_secret is not None and not self.webhook_url:
            raise ValueError(
                "webhook_url: Trello signs each hook with its callback URL; set it to the "
                "URL registered with Trello"
            )
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        """Every secret this source names, by field path ("token", "imap.password")."""
        return {name: value for name, value in self if isinstance(value, SecretRef)}

    def resolve_secrets(self) -> None:
        """Read every secret now. Raises SecretsUnreadable naming each one that cannot be
        read by its field path, so `config check` reports them all in one pass."""
        problems = []
        for path, ref in self.secret_refs().items():
            try:
                self._secrets[path] = ref.resolve()
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
        if problems:
            raise SecretsUnreadable(problems)

    def secret(self, name: str) -> str:
        return self._secrets[name].get_secret_value()


# A person's login on the machine where operators run syncd: `me` on the command line.
UNIX = "unix"


def handle_kinds() -> tuple[str, ...]:
    """The keys a person's handles may have: every source type, and `unix`."""
    from syncd.adapters import ADAPTER_MODULES  # the package only; no adapter is imported

    return (*sorted(ADAPTER_MODULES), UNIX)


class CommentSettings(SourceConfig):
    """Comments in a tool where a team works (GitHub, Jira, Trello): the handoff notes syncd
    posts there, and the /assign commands it reads there (README "Handoff notes and commands")."""

    # When to post a comment telling the item's people of a handoff made elsewhere:
    # "with_note" only when the handoff carries a note, "always", or "never".
    handoff_comment: Literal["with_note", "always", "never"] = "with_note"
    # Names of the sources whose item links this source's comments may show. Empty (the
    # default) shows none: a public repository must not print private Jira URLs.
    comment_links: list[str] = Field(default_factory=list)
    # Read `/assign @login note`, `/assign person` and `/unassign` from comments of mapped
    # people. Off by default; on GitHub it costs one more request per cycle (answered 304).
    commands: bool = False
    # Read comments as activity even without commands (for acceptance of handoffs). Jira's
    # come with the search at no cost, so this only changes GitHub and Trello.
    read_comments: bool = False

    @property
    def wants_comments(self) -> bool:
        return self.commands or self.read_comments


class Person(Strict):
    id: str
    name: str | None = None
    # Handles per tool type: github login, jira accountId or name, trello member id or
    # username, email address. A list where a person has several.
    handles: dict[str, str | list[str]] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _PERSON_ID.match(v):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.' (no ':')")
        return v

    @field_validator("handles")
    @classmethod
    def _known_kinds(cls, v: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        # A misspelled tool ("githb") would leave the person silently unmapped in that tool.
        unknown = sorted(set(v) - set(handle_kinds()))
        if unknown:
            raise ValueError(
                f"unknown tool {', '.join(map(repr, unknown))} (known: {', '.join(handle_kinds())})"
            )
        return v

    def handles_for(self, kind: str) -> list[str]:
        value = self.handles.get(kind, [])
        return [value] if isinstance(value, str) else list(value)


class DaemonConfig(Strict):
    # Random delay added to each poll so sources configured alike don't poll in lockstep.
    jitter: Duration = timedelta(seconds=5)
    # A job running longer than this is taken as hung (see the watchdog).
    hang_after: Duration = timedelta(minutes=10)
    # On SIGTERM, polls still running after this long (stuck in a slow request) are left
    # behind and the daemon exits anyway; keep it below the unit's TimeoutStopSec.
    stop_timeout: Duration = timedelta(seconds=20)
    # Write-backs that failed this many times are dead-lettered.
    max_write_attempts: int = Field(default=8, ge=1, le=100)
    # How long one HTTP request to a source may take (connect, each read, write) before it
    # counts as failed and is retried: bounds what a hung source can hold.
    http_timeout: Duration = timedelta(seconds=30)
    # The most one answer may hold once decompressed; a bigger one fails its source's poll
    # (a gzip bomb, a runaway listing) instead of the daemon's memory.
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)


class HttpConfig(Strict):
    """The daemon's own listener: webhooks, /healthz and /metrics. Off unless `listen` is set."""

    # "127.0.0.1:8787", or "[::1]:8787". Loopback by default in examples: put a reverse proxy
    # with TLS in front to receive hooks from the internet.
    listen: str | None = None
    # Larger webhook bodies are refused (413) before they are read in full. The payload is
    # only a hint to poll, so nothing in a large one is needed.
    max_body: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            listen_address(v)
        return v

    def address(self) -> tuple[str, int] | None:
        return listen_address(self.listen) if self.listen else None


def listen_address(text: str) -> tuple[str, int]:
    """ "host:port" (or "[v6]:port") as (host, port); ValueError with a clear message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'{text!r} is not host:port (e.g. "127.0.0.1:8787")')
    return host.removeprefix("[").removesuffix("]"), int(port)


class MatchingConfig(Strict):
    """How items become one request (README "How items are linked")."""

    # "declared": an item joins another's request only when it declares the same work (a
    # "[OPS-7] ..." title, a "Jira: OPS-7" line, a tool's link field, mail threading, an
    # operator's `syncd link`). "any-mention": any mention links, as syncd did before; in real
    # text most mentions name different work, so this merges unrelated requests.
    link_on: Literal["declared", "any-mention"] = "declared"
    # Extra line labels that declare identity ("Ticket: OPS-7"), beyond the built-in list.
    declare_labels: list[str] = Field(default_factory=list)

    @field_validator("declare_labels")
    @classmethod
    def _label_shape(cls, v: list[str]) -> list[str]:
        # A label is matched at the start of a line: one that is empty, or no words at all,
        # would make every line a declaration.
        for label in v:
            words = label.rstrip().rstrip(":").split()
            if not words or not any(c.isalpha() for c in label) or len(label) > 60:
                raise ValueError(
                    f'{label!r} is not a label: use a few words, such as "Ticket" or '
                    '"Tracked by" (at most 60 characters)'
                )
        return v


class Team(Strict):
    """A group that routing rules can assign to (README "Routing and follow-through")."""

    id: str
    members: list[str] = Field(min_length=1, description="person ids, in rotation order")
    lead: str | None = None
    # Overrides [acceptance] accept_within for handoffs to this team's members.
    accept_within: Duration | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _PERSON_ID.match(v):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.'")
        return v


# A title pattern is bounded in length, and runs with a time limit (syncd.routing), so no
# rule can stall a cycle on a pathological title.
MAX_TITLE_PATTERN = 200


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


OneOrMany = Annotated[list[str], BeforeValidator(_one_or_many)]


class RuleWhen(Strict):
    """What a request must show for a rule to match. Every test given must hold; a list
    matches when any of its entries does. An empty `when` matches every unowned request."""

    source: OneOrMany = Field(default_factory=list, description="configured source names")
    tool: OneOrMany = Field(default_factory=list, description="github, jira, trello or email")
    state: Annotated[list[State], BeforeValidator(_one_or_many)] = Field(default_factory=list)
    labels: OneOrMany = Field(default_factory=list, description="any of these (no case)")
    title: str | None = Field(default=None, description="a regular expression, searched")
    requester: OneOrMany = Field(
        default_factory=list, description="an address or handle, or a domain as '@example.com'"
    )
    unowned_for: Duration | None = None

    @field_validator("title")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v) > MAX_TITLE_PATTERN:
            raise ValueError(f"a title pattern is at most {MAX_TITLE_PATTERN} characters")
        try:
            regex.compile(v)
        except regex.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class RuleAssign(Strict):
    person: str | None = None
    team: str | None = None
    # round_robin: members in turn (the turn survives restarts); least_loaded: the member
    # with the fewest open requests.
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"

    @model_validator(mode="after")
    def _exactly_one(self) -> RuleAssign:
        if (self.person is None) == (self.team is None):
            raise ValueError("set exactly one of person or team")
        return self


class RoutingRule(Strict):
    name: str = Field(min_length=1, max_length=100)
    when: RuleWhen = Field(default_factory=RuleWhen)
    assign: RuleAssign


class RoutingOptions(Strict):
    # At most this many requests routed (or moved to a delegate) in one cycle: a rule that
    # matches far more than meant does little before someone notices.
    max_per_cycle: int = Field(default=20, ge=1, le=10_000)


class AcceptanceConfig(Strict):
    # A handoff nobody picked up within this long is overdue. Unset: none ever is.
    accept_within: Duration | None = None


class EscalationConfig(Strict):
    # What happens, once, to an overdue handoff: "comment" posts a reminder naming the new
    # and the previous owner on every linked item (as handoff comments, by each source's
    # handoff_comment policy); "reroute" hands it on by the routing rules, to someone other
    # than the owner who did not pick it up; "flag" only records it.
    action: Literal["flag", "comment", "reroute"] = "flag"


class Config(Strict):
    ledger: Path = Field(default_factory=lambda: Path(default_ledger_path()))
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    teams: list[Team] = Field(default_factory=list)
    routing: list[RoutingRule] = Field(default_factory=list)
    routing_options: RoutingOptions = Field(default_factory=RoutingOptions)
    acceptance: AcceptanceConfig = Field(default_factory=AcceptanceConfig)
    escalation: EscalationConfig | None = None
    path: Path | None = Field(default=None, exclude=True)

    def team(self, team_id: str) -> Team:
        for t in self.teams:
            if t.id == team_id:
                return t
        raise KeyError(team_id)

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


def _loc(loc: tuple[int | str, ...], doc: dict[str, Any]) -> str:
    out = ""
    node: Any = doc
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
                if isinstance(node, dict) and "name" in node:
                    out += f" ({node['name']})"
            except (IndexError, KeyError, TypeError):
                node = None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _problems(
    exc: ValidationError, doc: dict[str, Any], prefix: tuple[int | str, ...] = ()
) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{_loc(loc, doc)}: {msg}")
    return lines


def parse_config(doc: dict[str, Any], path: str = "<config>", *, resolve: bool = True) -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem."""
    from syncd.adapters import adapter_class  # late: adapters import config

    if not doc:
        raise ConfigError(
            path,
            ["the file is empty; `syncd config example` prints an annotated config to start from"],
        )
    problems: list[str] = []
    raw_sources = doc.get("sources", [])
    sources: list[SourceConfig] = []
    if not isinstance(raw_sources, list):
        problems.append("sources: must be an array of tables ([[sources]])")
        raw_sources = []
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict):
            problems.append(f"sources[{i}]: must be a table")
            continue
        kind = raw.get("type")
        try:
            cls = adapter_class(str(kind)) if kind is not None else None
        except KeyError as exc:
            problems.append(f"{_loc(('sources', i, 'type'), doc)}: {exc.args[0]}")
            continue
        if cls is None:
            problems.append(f"{_loc(('sources', i, 'type'), doc)}: field required")
            continue
        try:
            source = cls.Config.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems(exc, doc, ("sources", i)))
            continue
        if resolve:
            try:
                source.resolve_secrets()
            except SecretsUnreadable as exc:
                problems.extend(f"{_loc(('sources', i), doc)}.{p}" for p in exc.problems)
        sources.append(source)
    rest = {k: v for k, v in doc.items() if k != "sources"}
    try:
        config = Config.model_validate({**rest, "path": path})
    except ValidationError as exc:
        problems.extend(_problems(exc, doc))
        config = None
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if s.name in seen:
            problems.append(
                f"{_loc(('sources', i, 'name'), doc)}: duplicate source name {s.name!r}"
            )
        seen.add(s.name)
    if config is not None:
        ids: set[str] = set()
        owners: dict[tuple[str, str], str] = {}
        for i, p in enumerate(config.people):
            if p.id in ids:
                problems.append(f"people[{i}].id: duplicate person {p.id!r}")
            ids.add(p.id)
            for kind in p.handles:
                for h in p.handles_for(kind):
                    other = owners.get((kind, h.lower()))
                    if other and other != p.id:
                        problems.append(
                            f"people[{i}].handles.{kind}: {h!r} is already {other!r}'s handle"
                        )
                    owners[(kind, h.lower())] = p.id
        problems += _routing_problems(config, ids)
    if problems or config is None:
        raise ConfigError(path, problems)
    return config.model_copy(update={"sources": sources})


def _routing_problems(config: Config, people: set[str]) -> list[str]:
    """Names in [[teams]] and [[routing]] that point nowhere, each with its field path."""
    from syncd.adapters import ADAPTER_MODULES  # the package only; no adapter is imported

    tools = tuple(sorted(ADAPTER_MODULES))
    problems: list[str] = []
    teams: set[str] = set()
    for i, t in enumerate(config.teams):
        if t.id in teams:
            problems.append(f"teams[{i}].id: duplicate team {t.id!r}")
        teams.add(t.id)
        for j, m in enumerate(t.members):
            if m not in people:
                problems.append(f"teams[{i}].members[{j}]: no person {m!r} in [[people]]")
        if t.lead is not None and t.lead not in people:
            problems.append(f"teams[{i}].lead: no person {t.lead!r} in [[people]]")
    sources = {s.name for s in config.sources}
    names: set[str] = set()
    for i, r in enumerate(config.routing):
        at = f"routing[{i}] ({r.name})"
        if r.name in names:
            problems.append(f"{at}.name: duplicate rule name {r.name!r}")
        names.add(r.name)
        if r.assign.person is not None and r.assign.person not in people:
            problems.append(f"{at}.assign.person: no person {r.assign.person!r} in [[people]]")
        if r.assign.team is not None and r.assign.team not in teams:
            problems.append(f"{at}.assign.team: no team {r.assign.team!r} in [[teams]]")
        for j, name in enumerate(r.when.source):
            if config.sources and name not in sources:
                problems.append(f"{at}.when.source[{j}]: no source {name!r} in [[sources]]")
        for j, kind in enumerate(r.when.tool):
            if kind not in tools:
                problems.append(f"{at}.when.tool[{j}]: {kind!r} is not one of {', '.join(tools)}")
    return problems


def load_config(path: str | Path, *, resolve: bool = True) -> Config:
    p = Path(path)
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), ["file not found (set --config or $SYNCD_CONFIG)"]) from None
    except IsADirectoryError:
        raise ConfigError(str(p), ["is a directory; name the config file itself"]) from None
    except PermissionError:
        raise ConfigError(
            str(p),
            [
                "cannot read: permission denied (operators need to be in the file's group, "
                "syncd-operators in the service guide, and to log in again after being added)"
            ],
        ) from None
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(p), ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from None
    config = parse_config(doc, str(p), resolve=resolve)
    # A relative ledger path is taken relative to the config file, not the working directory.
    if "ledger" in doc and not config.ledger.is_absolute():
        config = config.model_copy(update={"ledger": p.parent / config.ledger})
    return config


def ledger_named_by(path: str | Path) -> Path:
    """The ledger a config file names, read leniently: for `syncd reload`, which must find
    the running daemon's ledger even when the edited config is now invalid (the daemon then
    reports the problems and keeps the old config)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        doc = {}
    ledger = doc.get("ledger")
    if not isinstance(ledger, str) or not ledger:
        return Path(default_ledger_path())
    named = Path(ledger)
    return named if named.is_absolute() else p.parent / named
