from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from audit import services as audit_services
        from integrations.audit_events import publish_audit_entry

        # Every audit entry is also an `audit_log` event (SPEC §8).
        audit_services.PUBLISH_HOOK["publish"] = publish_audit_entry
