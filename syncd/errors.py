"""The errors syncd raises, and what a user can do about each.

SyncdError                 anything a user can act on; the CLI prints its message, exit 1
├── ConfigError            the config file is unreadable or invalid (carries one line per problem)
├── LedgerError            the ledger cannot be opened, migrated or locked
│   └── LedgerBusy         another `syncd run` already holds this ledger
├── NotFound               a request, person or source named on the command line does not exist
└── SourceError            talking to one source failed; the cycle for that source stops
    ├── RetriableError     worth trying again: 429, 5xx, timeouts, dropped connections
    │   └── RateLimited    the source asked us to wait until `retry_at`
    └── FatalError         will fail the same way again: other 4xx, a rejected write
        └── MalformedResponse  the source answered with something we cannot read

Each carries a message written for the person reading it. None of them may carry a secret:
messages are built from redacted URLs only (see syncd.redact).
"""

from __future__ import annotations

from datetime import datetime


class SyncdError(Exception):
    """Base of every error a user can act on."""


class ConfigError(SyncdError):
    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class LedgerError(SyncdError):
    pass


class LedgerBusy(LedgerError):
    pass


class NotFound(SyncdError):
    pass


class SourceError(SyncdError):
    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.detail = message
        super().__init__(f"{source}: {message}")


class RetriableError(SourceError):
    def __init__(self, source: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(source, message)
        self.retry_after = retry_after


class RateLimited(RetriableError):
    def __init__(self, source: str, message: str, retry_at: datetime) -> None:
        super().__init__(source, message)
        self.retry_at = retry_at


class FatalError(SourceError):
    pass


class MalformedResponse(FatalError):
    pass


class ResponseTooLarge(FatalError):
    """An answer bigger than [daemon] max_response_bytes: not retried, it would be again."""
