"""Structured (JSON) log lines carrying the current request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Who is asking, for audit entries written anywhere during the request: ip and user agent.
client_var: contextvars.ContextVar[dict | None] = contextvars.ContextVar("client", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = _loggable(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        line["message"] = scrub(line["message"])
        if "exception" in line:
            line["exception"] = scrub(line["exception"])
        return scrub(json.dumps(line, default=str))


# A query string (often an API key or a token) after a URL or a path.
_QUERY = re.compile(r"""((?:[a-zA-Z][a-zA-Z0-9+.-]*://|/)[^\s?#"'<>]*)\?[^\s"'<>]*""")


def scrub(text: str) -> str:
    """Query strings masked: no log line holds one (secrets are never logged:
    docs/design.md#masking-and-redaction)."""
    return _QUERY.sub(r"\1?••••", text)


def _loggable(key: str, value):
    """A request (django.request records carry one) as its method and path only: its
    str() holds the query string, and its headers may hold secrets."""
    if key == "request" and hasattr(value, "path") and hasattr(value, "method"):
        return {"method": value.method, "path": value.path}
    return value


class ClientErrorFilter(logging.Filter):
    """django.security.* reports a client's bad request (bad Host header, too many fields):
    one WARNING line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = record.stack_info = None
        return True
