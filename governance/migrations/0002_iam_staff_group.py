from django.db import migrations

IAM_STAFF = "IAM staff"

# app label -> model -> actions; custom permissions are named in full.
PERMISSIONS = {
    "connectors": {
        "identitysource": ["add", "change", "view"],
        "identity": ["change", "view"],
        "device": ["view"],
        "connector": ["add", "change", "view", "decide_connector", "revoke_connector", "provision_connector"],
        "connectorapp": ["add", "change", "view"],
        "grant": ["change", "view"],
        "syncrun": ["view"],
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


def create_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=IAM_STAFF)
    for app_label, models in PERMISSIONS.items():
        for model, actions in models.items():
            codenames = [a if "_" in a else f"{a}_{model}" for a in actions]
            perms = list(
                Permission.objects.filter(content_type__app_label=app_label, content_type__model=model, codename__in=codenames)
            )
            missing = set(codenames) - {p.codename for p in perms}
            if missing:
                raise RuntimeError(f"Permissions missing for {app_label}.{model}: {sorted(missing)}")
            group.permissions.add(*perms)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=IAM_STAFF).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0001_initial"),
        ("connectors", "0001_initial"),
        ("audit", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
