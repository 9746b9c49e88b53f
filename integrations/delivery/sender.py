"""The one HTTP seam for code outside the delivery loop (the test send): a synchronous wrapper.

The delivery loop sends with :class:`integrations.delivery.client.AsyncSender` directly; this
module runs one attempt of the same client to completion for callers that are not async.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from integrations.delivery.client import (
    AsyncSender,
    Outcome,
    classify_status,
    parse_retry_after,
)
from integrations.delivery.signing import PreparedRequest
from integrations.models import Destination

__all__ = ["Outcome", "Sender", "classify_status", "get_sender", "parse_retry_after"]


class Sender:
    """Sends one attempt with the delivery client, outside any event loop."""

    def send(
        self, destination: Destination, request: PreparedRequest, *, timeout: float | None = None
    ) -> Outcome:
        """One attempt within the timeout (the destination's by default); never raises."""
        seconds = float(timeout or destination.timeout_seconds)

        async def attempt() -> Outcome:
            client = AsyncSender()
            try:
                return await client.send(destination, request, timeout=seconds)
            finally:
                await client.close()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(attempt())
        # Called from inside an event loop's thread: run on a thread of our own.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, attempt()).result()


_sender: Sender | None = None


def get_sender() -> Sender:
    """The process's sender."""
    global _sender
    if _sender is None:
        _sender = Sender()
    return _sender
