"""django-q2 entry points: thin, they load by id and call the engine."""

from __future__ import annotations


def enqueue_drain(destination_id) -> None:
    """Queue a drain of one destination (placeholder until the engine lands)."""
