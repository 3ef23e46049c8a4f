from django.apps import AppConfig

# The IAM staff group's permissions on this app's models (governance.iam_group holds the others).
IAM_PERMISSIONS = {
    "receiverstream": ["add", "change", "view"],
    "receivedset": ["view"],
    "transmitterreceiver": ["add", "change", "view"],
    "transmitterstream": ["change", "view"],
    "outboxset": ["change", "view"],
    "signingkey": ["view"],
}


def grant_iam_staff(sender, apps=None, using="default", **kwargs) -> None:
    """After migrate (and a test database flush), give IAM staff the receiver's admin permissions."""
    from django.apps import apps as global_apps

    from governance.iam_group import IAM_STAFF

    apps = apps or global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=IAM_STAFF)
    codenames = [f"{action}_{model}" for model, actions in IAM_PERMISSIONS.items() for action in actions]
    perms = Permission.objects.using(using).filter(content_type__app_label="signals", codename__in=codenames)
    group.permissions.add(*perms)


class SignalsConfig(AppConfig):
    name = "signals"
    verbose_name = "Shared Signals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connectors import crypto

        from .models import ReceiverStream, SigningKey, TransmitterStream

        crypto.register_encrypted_field(ReceiverStream, "poll_authorization_encrypted")
        crypto.register_encrypted_field(SigningKey, "private_key_encrypted")
        crypto.register_encrypted_field(TransmitterStream, "authorization_encrypted")
        from django.db.models.signals import post_migrate

        post_migrate.connect(grant_iam_staff, sender=self, dispatch_uid="signals.iam_staff")
        from django.db.models.signals import post_delete, post_save

        from .services import forget_streams

        # The push view's per-process stream cache: a change made here is seen at once.
        post_save.connect(forget_streams, sender=ReceiverStream, dispatch_uid="signals.forget_streams")
        post_delete.connect(forget_streams, sender=ReceiverStream, dispatch_uid="signals.forget_streams_d")

        from .hooks import connect

        connect()

        from telemetry import health, metrics

        from . import health as signals_health

        health.register(signals_health.SignalsOutbox)
        metrics.register_collector("signals", signals_health.collect)
