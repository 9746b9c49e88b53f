from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from django.db.models.signals import pre_delete
        from django_q.signals import post_spawn

        from audit.signals import audit_entry_recorded
        from integrations.audit_events import on_audit_entry_recorded
        from integrations.delivery.loop import on_worker_spawn
        from integrations.delivery.outbox import delete_waiting_rows
        from integrations.models import Destination

        # Every audit entry is also an `audit_log` event (docs/design.md#audit).
        audit_entry_recorded.connect(
            on_audit_entry_recorded, dispatch_uid="integrations.audit_events"
        )
        # Each worker of the cluster stops cleanly on SIGTERM and starts delivery loops.
        post_spawn.connect(on_worker_spawn, dispatch_uid="integrations.delivery.loop")
        # A deleted destination's waiting events (see DeliveryEvent.destination).
        pre_delete.connect(
            delete_waiting_rows, sender=Destination, dispatch_uid="integrations.outbox"
        )
