"""Structured logs: JSON lines when not on a terminal (journald, files), readable on a terminal.

Every event passes through `scrub`, which redacts registered secrets from every value, so a
token that ends up in an exception message or a URL still never reaches a log line.

Each JSON line carries `timestamp` (ISO 8601, UTC), `level`, `logger` (the module that
logged, e.g. "syncd.daemon"; "apscheduler.scheduler" for the scheduler's own warnings),
`event` (a short fixed message, good to filter on) and the event's own fields (`source`,
`error`, ...); `exception` holds a traceback when there is one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from syncd.redact import redact
from syncd.safetext import safe_text

# Third-party libraries log through the standard library: the scheduler warns when a run is
# skipped because the previous one still runs. Below WARNING they are noise, and httpx's INFO
# lines would repeat every URL syncd already reports in its own events.
_STDLIB_LEVEL = logging.WARNING


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    return redact(str(value))


def scrub(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        # exc_info is turned into text by format_exc_info, which runs before this.
        event[key] = _scrubbed(value)
    return event


def terminal_safe(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """On a terminal, values (errors quoting a source, titles) lose their control
    characters; a traceback keeps its line breaks. JSON lines escape them already."""
    for key, value in list(event.items()):
        if isinstance(value, str):
            event[key] = safe_text(value, keep_newlines=key == "exception")
    return event


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(
    logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.setdefault("logger", getattr(logger, "name", "syncd"))
    return event


class _ToStructlog(logging.Handler):
    """Hands standard-library log records to structlog, so every line is JSON and scrubbed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:
            # Never raise into the library that logged (the scheduler's thread, say).
            self.handleError(record)


def configure(
    *, debug: bool = False, json: bool | None = None, stream: TextIO | None = None
) -> None:
    stream = stream or sys.stderr
    as_json = (not stream.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub,
        *([] if as_json else [terminal_safe]),
        renderer,
    ]

    def factory(*args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(stream, str(args[0]) if args else "syncd")

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if debug else logging.INFO
        ),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    # configure() may run more than once in a process (tests, the demo): one bridge only.
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(_STDLIB_LEVEL)
