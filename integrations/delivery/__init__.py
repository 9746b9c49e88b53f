"""Delivery: the path of an event after publishing.

publish (integrations.events) → outbox rows (integrations_deliveryevent) → claim
(queue) → send (client, signing) → record (record), driven by the asyncio
delivery loop (loop) inside the django-q2 cluster, with one retry policy (policy).
"""
