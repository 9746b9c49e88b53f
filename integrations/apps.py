from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from audit import services as audit_services
        from integrations.audit_events import publish_audit_entry

        # Every audit entry is also an `audit_log` event (SPEC §8).
        audit_services.PUBLISH_HOOK["publish"] = publish_audit_entry

        from django_q.signals import post_spawn

        from integrations.delivery.loop import on_worker_spawn

        # Each worker of the cluster stops cleanly on SIGTERM and starts delivery loops.
        post_spawn.connect(on_worker_spawn, dispatch_uid="integrations.delivery.loop")
