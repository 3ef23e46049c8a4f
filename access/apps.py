from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access decisions"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from connectors.models import IdentitySource

        from . import recording
        from .entities import forget_hr_order

        recording.install_exit_flush()
        post_save.connect(forget_hr_order, sender=IdentitySource, dispatch_uid="access.hr_order")
        post_delete.connect(forget_hr_order, sender=IdentitySource, dispatch_uid="access.hr_order_gone")
