"""Delivery: the path of an event after publishing.

publish (integrations.events) → outbox rows (integrations_deliveryevent) → claim
(integrations.engine) → send (client) → record (integrations.engine), driven by the asyncio
delivery loop (loop) inside the django-q2 cluster, with one retry policy (policy).
"""
