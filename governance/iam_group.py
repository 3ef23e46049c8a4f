"""The "IAM staff" group and its model permissions.

Created by a data migration, and again after every ``post_migrate`` (a test-database flush removes rows
that migrations created, and ``flush`` re-emits ``post_migrate``), so the group is always there.
"""

from __future__ import annotations

IAM_STAFF = "IAM staff"

# app label -> model -> actions; custom permissions are named in full.
PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "connectors": {
        "identitysource": ["add", "change", "view"],
        "identity": ["change", "view"],
        "device": ["view"],
        "connector": ["add", "change", "view", "decide_connector", "revoke_connector", "provision_connector"],
        "connectorapp": ["add", "change", "view"],
        "grant": ["change", "view"],
        "syncrun": ["view"],
        "person": ["change", "view"],
        "catalogentry": ["add", "change", "view"],
    },
    "governance": {
        "user": ["view"],
        "connectorrequest": ["add", "change", "view"],
        "decision": ["view"],
        "attestationcampaign": ["add", "change", "view"],
        "attestation": ["view"],
        "managerreview": ["view"],
        "ownershiptransfer": ["add", "change", "view"],
    },
    "audit": {
        "auditevent": ["view"],
        "auditcheckpoint": ["view"],
        "ingestkey": ["add", "change", "view"],
    },
}


def ensure_iam_staff_group(apps) -> None:
    """Create the group (if missing) and give it every permission in PERMISSIONS."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=IAM_STAFF)
    for app_label, models in PERMISSIONS.items():
        for model, actions in models.items():
            codenames = [a if "_" in a else f"{a}_{model}" for a in actions]
            perms = list(
                Permission.objects.filter(
                    content_type__app_label=app_label, content_type__model=model, codename__in=codenames
                )
            )
            missing = set(codenames) - {p.codename for p in perms}
            if missing:
                raise RuntimeError(f"Permissions missing for {app_label}.{model}: {sorted(missing)}")
            group.permissions.add(*perms)


def on_post_migrate(sender, apps=None, using="default", **kwargs) -> None:
    """Recreate the group after migrate or flush (only once auth and our apps' permissions exist)."""
    from django.apps import apps as global_apps

    if sender.label != "governance":
        return
    ensure_iam_staff_group(apps or global_apps)
