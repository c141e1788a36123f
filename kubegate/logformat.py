"""How kubegate's processes write their logs: text or JSON lines, never a token.

`configure_logging(level=..., log_format="text" | "json")` is what `kubegate serve` and
`kubegate sidecar` call once at start. A JSON line is one object:

    {"time": "2025-01-02T03:04:05.000006Z", "level": "INFO", "logger": "exchanger.server",
     "message": "...", "trace_id": "...", "session_id": "...", "exception": "Traceback ..."}

Rules of this module:
- no token reaches a log line, in either format: a filter on the handler replaces everything
  shaped like a compact JWT (`TOKEN_SHAPE`) by `[REDACTED]` in the message, the exception
  text and the stack, before any formatter sees them;
- `TOKEN_SHAPE` is matched in time linear in the text: every quantifier is over a class that
  excludes the next literal (`.`), and a match may only start at the start of a base64url run
  (the lookbehind), so no start position is scanned more than a bounded number of times;
- `trace_id` and `session_id` come from the request scope of the current thread or task
  (`request_scope`, a contextvar), set by whoever runs one exchange (the exchanger's use
  case, the sidecar's keeper); a JSON line carries them only when they are set;
- times are RFC 3339 in UTC with microseconds, like the audit log's.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Final, Literal, NamedTuple, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED: Final = "[REDACTED]"

# A compact JWS (three segments) or JWE (five), each segment base64url. Either a header that
# decodes to `{"` (`eyJ`, the segments may be short: `alg: none` has an empty signature) or
# any `ey...` header with long first segments (`{ ` and the like). Generous on purpose: a
# false positive only hides a value.
TOKEN_SHAPE: Final = re.compile(
    r"(?<![A-Za-z0-9_-])"
    r"(?:eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+|ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*"
)


def redact_tokens(text: str, replacement: str = REDACTED) -> str:
    """`text` with every JWT-shaped part replaced."""
    return TOKEN_SHAPE.sub(replacement, text)


# -- the current request --------------------------------------------------------------------


class RequestIds(NamedTuple):
    """What identifies the exchange a log line was written in (empty: not known yet). A named
    tuple, not a dataclass: one is made per exchange, traced or not, so it must be cheap."""

    trace_id: str = ""
    session_id: str = ""


_CURRENT: ContextVar[RequestIds | None] = ContextVar("kubegate_request", default=None)


def request_scope(trace_id: str = "") -> RequestScope:
    """`with request_scope(trace_id):` log lines written inside carry `trace_id` (and the
    session id, once `set_session_id` names it); on exit the previous scope is current again."""
    return RequestScope(trace_id)


class RequestScope:
    """The context manager of `request_scope`."""

    __slots__ = ("_ids", "_token")

    def __init__(self, trace_id: str = "") -> None:
        self._ids = RequestIds(trace_id)
        self._token: Token[RequestIds | None] | None = None

    def __enter__(self) -> None:
        self._token = _CURRENT.set(self._ids)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)


def set_session_id(session_id: str) -> None:
    """Name the session of the current request scope (nothing outside one)."""
    current = _CURRENT.get()
    if current is not None:
        _CURRENT.set(RequestIds(current.trace_id, session_id))


def current_request() -> RequestIds | None:
    return _CURRENT.get()


# -- handler parts --------------------------------------------------------------------------


class RedactTokens(logging.Filter):
    """Replaces JWT-shaped text in a record's message, exception text and stack (in place,
    so every formatter after it sees the redacted record)."""

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: the formatter reports it as logging always does
            return True
        record.msg, record.args = redact_tokens(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_tokens(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": format_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_tokens(record.getMessage()),
        }
        ids = current_request()
        if ids is not None and ids.trace_id:
            line["trace_id"] = ids.trace_id
        if ids is not None and ids.session_id:
            line["session_id"] = ids.session_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact_tokens(record.exc_text)
        if record.stack_info:
            line["stack"] = redact_tokens(record.stack_info)
        return json.dumps(line, separators=(",", ":"))


def format_time(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def log_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `log_format`, tokens redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactTokens())
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(*, level: str, log_format: LogFormat,
                      stream: TextIO | None = None) -> None:
    """The process's root handler, as `logging.basicConfig` sets it (and, like it, nothing
    when the root logger already has handlers)."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format, stream)])
