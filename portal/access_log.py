"""gunicorn's access log as one JSON object per line (gunicorn.conf.py sets it as logger_class).

Built with json.dumps, so a quote in a path or user agent cannot break the line. The query
string is left out, as in our own request line: it may carry tokens.
"""

from __future__ import annotations

import json
import time
import traceback

from gunicorn.glogging import Logger


def access_line(atoms: dict) -> str:
    """The JSON line for gunicorn's atoms of one request."""
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "level": "INFO",
        "logger": "gunicorn.access",
        "remote": atoms.get("h"),
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
        "bytes": atoms.get("B"),
        "duration_ms": round(atoms.get("D", 0) / 1000, 1),
        "user_agent": atoms.get("a"),
        "request_id": atoms.get("{x-request-id}o"),
    }
    forwarded_for = atoms.get("{x-forwarded-for}i")
    if forwarded_for:
        line["forwarded_for"] = forwarded_for
    return json.dumps(line)


class JsonAccessLogger(Logger):
    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info(access_line(self.atoms(resp, req, environ, request_time)))
        except Exception:  # a log line must never fail a request
            self.error(traceback.format_exc())
