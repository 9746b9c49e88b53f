"""Run a local demo webhook receiver on 127.0.0.1 that verifies and prints every batch."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connections

from devtools.receiver import (
    DEFAULT_SIGNATURE_HEADER,
    HOST,
    MAX_SLEEP_SECONDS,
    Received,
    ReceiverServer,
    verify_signature,
    verify_splunk_authorization,
)
from integrations.models import Destination

SECRETS_CACHE_SECONDS = 5.0
RETRY_AFTER_SECONDS = 5


class DemoReceiver(ReceiverServer):
    """A ReceiverServer that takes its secrets from the demo destinations and prints batches."""

    def __init__(self, *, command: Command, fixed_secrets: list[str], **kwargs: Any) -> None:
        super().__init__(secrets=fixed_secrets, **kwargs)
        self.command = command
        self.fixed_secrets = fixed_secrets
        self._cache_lock = threading.Lock()
        self._cache: list[tuple[str, list[str]]] = []
        self._cache_at = float("-inf")
        self._warned = False

    def known_secrets(self) -> list[tuple[str, list[str]]]:
        """(signature header, secrets) pairs: --secret, or the destinations on this port."""
        if self.fixed_secrets:
            return [(self.signature_header, list(self.fixed_secrets))]
        with self._cache_lock:
            if time.monotonic() - self._cache_at > SECRETS_CACHE_SECONDS:
                self._cache = self._load_from_database()
                self._cache_at = time.monotonic()
            return self._cache

    def _load_from_database(self) -> list[tuple[str, list[str]]]:
        """Secrets (current and previous) of destinations whose URL points at this port."""
        pairs: list[tuple[str, list[str]]] = []
        try:
            close_old_connections()
            destinations = Destination.objects.filter(endpoint_url__contains=f"{HOST}:{self.port}")
            for destination in destinations:
                try:
                    secrets = [destination.secret(), destination.previous_secret()]
                except Exception as error:  # a row we cannot decrypt: say so, keep going
                    self.command.say(f"cannot read the secret of {destination.name!r}: {error}")
                    continue
                header = destination.signature_header or DEFAULT_SIGNATURE_HEADER
                pairs.append((header, [s for s in secrets if s]))
        except Exception as error:
            self.command.say(f"cannot load destination secrets from the database: {error}")
            return self._cache
        finally:
            connections.close_all()  # this handler thread's connections only
        if not pairs and not self._warned:
            self._warned = True
            self.command.say(
                f"no destination points at {HOST}:{self.port}; every signature will FAIL "
                "(create one, or pass --secret)"
            )
        return pairs

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True if the signature matches the secret of any demo destination."""
        lowered = {k.lower(): v for k, v in headers.items()}
        return any(
            verify_signature(body, lowered.get(header.lower()), secrets)
            for header, secrets in self.known_secrets()
        )

    def check_authorization(self, value: str | None) -> bool | None:
        """Check `Authorization: Splunk <secret>` against the known secrets."""
        secrets = [s for _, pair_secrets in self.known_secrets() for s in pair_secrets]
        return verify_splunk_authorization(value, secrets)

    def on_received(self, received: Received) -> None:
        """Print one line per batch."""
        self.command.say(format_line(received), stamp=received.time)


def format_line(received: Received) -> str:
    """One readable line: delivery id, events, types, signature and the answer."""
    delivery = f"{received.delivery_id[:8]}…" if received.delivery_id else "-"
    count = len(received.event_ids)
    types = list(dict.fromkeys(received.event_types))
    noun = "event" if count == 1 else "events"
    events = f"{count} {noun}" + (f" ({', '.join(types)})" if types else "")
    parts = [f"delivery {delivery}", events]
    if received.method != "POST" or received.json is None:
        parts.append(f"{received.method} {received.path} {len(received.body)} bytes")
    parts.append("signature OK" if received.signature_ok else "signature FAILED")
    if received.auth_ok is not None:
        parts.append("auth OK" if received.auth_ok else "auth FAILED")
    if received.status is None:
        answer = f"→ {received.action} (no answer)"
    else:
        answer = f"→ {received.status}"
        if received.action == "random" and received.status == 429:
            answer += f" (random failure, Retry-After: {RETRY_AFTER_SECONDS})"
        elif received.action == "random":
            answer += " (random failure)"
    parts.append(answer)
    return "  ".join(parts)


def parse_statuses(value: str) -> list[int]:
    """Parse "500,429" into [500, 429]."""
    try:
        statuses = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as error:
        raise CommandError(f"--fail-statuses: not a list of statuses: {value!r}") from error
    if not statuses or any(not 100 <= s <= 599 for s in statuses):
        raise CommandError(f"--fail-statuses: give HTTP statuses, e.g. 500,503,429: {value!r}")
    return statuses


class Command(BaseCommand):
    help = "Serve a demo webhook receiver on 127.0.0.1 that verifies and prints every batch."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_event = threading.Event()
        self._print_lock = threading.Lock()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--host", default=HOST, help="must be 127.0.0.1 (loopback only)")
        parser.add_argument("--path", default="/hook", help="path shown in the URL")
        parser.add_argument("--fail-rate", type=float, default=0.0, help="share failed, 0..1")
        parser.add_argument("--fail-statuses", default="500,503,429", help="e.g. 500,429")
        parser.add_argument("--slow", type=float, default=0.0, help="seconds before answering")
        parser.add_argument(
            "--secret",
            action="append",
            default=[],
            help="a secret to verify with (repeatable); default: the destinations on this port",
        )
        parser.add_argument("--signature-header", default=DEFAULT_SIGNATURE_HEADER)
        parser.add_argument("--seed", type=int, default=None, help="seed for --fail-rate")
        parser.add_argument(
            "--max-seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)"
        )

    def say(self, message: str, stamp: float | None = None) -> None:
        """Print one timestamped line (thread-safe)."""
        when = datetime.fromtimestamp(stamp if stamp is not None else time.time())
        with self._print_lock:
            self.stdout.write(f"{when:%H:%M:%S}  {message}")
            self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        if options["host"] != HOST:
            raise CommandError(f"The demo receiver only binds {HOST}, not {options['host']!r}.")
        port = options["port"]
        if not 0 <= port <= 65535:
            raise CommandError(f"--port: not a port: {port}")
        fail_rate = options["fail_rate"]
        if not 0.0 <= fail_rate <= 1.0:
            raise CommandError("--fail-rate must be within 0..1")
        slow = options["slow"]
        if not 0.0 <= slow <= MAX_SLEEP_SECONDS:
            raise CommandError(f"--slow must be within 0..{MAX_SLEEP_SECONDS:g} seconds")
        server = DemoReceiver(
            command=self,
            fixed_secrets=[s for s in options["secret"] if s],
            port=port,
            path=options["path"],
            signature_header=options["signature_header"],
            fail_rate=fail_rate,
            fail_statuses=parse_statuses(options["fail_statuses"]),
            retry_after=RETRY_AFTER_SECONDS,
            slow_seconds=slow,
            seed=options["seed"],
        )
        try:
            server.start()
        except OSError as error:
            raise CommandError(f"Cannot listen on {HOST}:{port}: {error}") from error
        previous = self._install_signal_handlers()
        try:
            source = "--secret" if server.fixed_secrets else f"destinations on {HOST}:{server.port}"
            self.say(f"listening on {server.url}  (secrets: {source}; Ctrl-C to stop)")
            if fail_rate:
                self.say(f"failing {fail_rate:.0%} with {options['fail_statuses']}")
            deadline = time.monotonic() + options["max_seconds"] if options["max_seconds"] else None
            while not self.stop_event.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            self._restore_signal_handlers(previous)
        self.say(f"stopped; {len(server)} requests, {len(server.events_received())} events OK")

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Stop on SIGTERM/SIGINT (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: self.stop_event.set())
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
