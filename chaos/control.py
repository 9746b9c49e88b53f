"""Destination lifecycle during the chaos run, through the portal's services.

Runs inside `manage.py shell` as one long-lived process, so an action takes milliseconds when
the runner asks for it (no Django start-up in between). It reads one JSON command per line on
stdin and answers one `CONTROL {...}` line on stdout:

    {"op": "pause" | "activate" | "delete", "id": "<destination uuid>"}
    {"op": "rotate", "id": "<destination uuid>", "secret": "<new secret>"}

Each goes through integrations.services (audited, as a user's click would), with the
publisher's retries on a lost database connection. It ends at EOF or after `max_seconds`.
"""

from __future__ import annotations

import json
import sys
import time

from chaos.publisher import _with_db_retries


def _apply(command: dict) -> dict:
    from integrations.models import Destination
    from integrations.services import (
        destination_delete,
        destination_rotate_secret,
        destination_set_active,
    )

    destination = Destination.objects.get(pk=command["id"])
    op = command["op"]
    if op in ("pause", "activate"):
        destination_set_active(destination=destination, actor=None, active=op == "activate")
    elif op == "rotate":
        destination_rotate_secret(
            destination=destination, actor=None, new_secret=command["secret"], overlap_hours=1
        )
    elif op == "delete":
        destination_delete(destination=destination, actor=None)
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"op": op, "id": command["id"], "ok": True}


def serve(max_seconds: float = 900.0) -> None:
    deadline = time.monotonic() + max_seconds
    stats = {"retries": 0, "close_errors": 0}
    print("CONTROL " + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if time.monotonic() > deadline:
            break
        if not line.strip():
            continue
        command = json.loads(line)
        started = time.time()
        try:
            result = _with_db_retries(command["op"], lambda c=command: _apply(c), stats)
        except Exception as error:  # report, do not die: the runner decides
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            result = {
                "op": command.get("op"),
                "ok": False,
                "error": f"{type(error).__name__}: {first_line}",
            }
        result.update(started=started, finished=time.time())
        print("CONTROL " + json.dumps(result), flush=True)
