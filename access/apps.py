from django.apps import AppConfig

# The IAM staff group's permissions on this app's models (governance.iam_group holds the others).
IAM_PERMISSIONS = {
    "policy": ["add", "change", "view"],
    "policyversion": ["view"],
    "decisioncount": ["view"],
    "decisionsample": ["view"],
}


def grant_iam_staff(sender, apps=None, using="default", **kwargs) -> None:
    """After migrate (and a test database flush), give IAM staff the decision point's admin permissions."""
    from django.apps import apps as global_apps

    from governance.iam_group import IAM_STAFF

    apps = apps or global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=IAM_STAFF)
    codenames = [f"{action}_{model}" for model, actions in IAM_PERMISSIONS.items() for action in actions]
    perms = Permission.objects.using(using).filter(content_type__app_label="access", codename__in=codenames)
    group.permissions.add(*perms)


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access decisions"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from connectors.models import IdentitySource

        from . import recording
        from .entities import forget_hr_order

        recording.install_exit_flush()
        post_migrate.connect(grant_iam_staff, sender=self, dispatch_uid="access.iam_staff")
        post_save.connect(forget_hr_order, sender=IdentitySource, dispatch_uid="access.hr_order")
        post_delete.connect(forget_hr_order, sender=IdentitySource, dispatch_uid="access.hr_order_gone")
