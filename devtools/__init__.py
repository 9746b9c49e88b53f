"""Development tools, not product code: the local demo receiver, the event simulator and
their management commands (`manage.py demo_receiver`, `manage.py simulate_events`)."""
