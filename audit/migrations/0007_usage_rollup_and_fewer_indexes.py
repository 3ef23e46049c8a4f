"""Fewer indexes on the audit trail, and the usage roll-up mark.

Each AuditEvent foreign key had an index of its own. Nothing reads events by grant, source,
ingest key or staff user, and the composite indexes (connector, identity and device with time,
see 0006) serve the rest, so the seven single-column indexes only cost every appended event
(about a third of the COPY time of an ingest batch). They are dropped by name here rather than
by AlterField, which on SQLite rebuilds the table and with it would drop the append-only triggers.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

FIELDS = ["actor_identity", "actor_user", "connector", "device", "grant", "ingest_key", "source"]


def _index_names(apps, schema_editor):
    model = apps.get_model("audit", "AuditEvent")
    table = model._meta.db_table
    for name in FIELDS:
        column = model._meta.get_field(name).column
        yield schema_editor._create_index_name(table, [column]), column


def drop_indexes(apps, schema_editor):
    for index, _ in _index_names(apps, schema_editor):
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(index)}")


def create_indexes(apps, schema_editor):
    table = schema_editor.quote_name(apps.get_model("audit", "AuditEvent")._meta.db_table)
    for index, column in _index_names(apps, schema_editor):
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {schema_editor.quote_name(index)} "
            f"ON {table} ({schema_editor.quote_name(column)})"
        )


def _unindexed(name, to, related_name="+"):
    return migrations.AlterField(
        model_name="auditevent",
        name=name,
        field=models.ForeignKey(
            blank=True,
            db_constraint=False,
            db_index=False,
            null=True,
            on_delete=django.db.models.deletion.DO_NOTHING,
            related_name=related_name,
            to=to,
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0006_covering_activity_indexes"),
        ("connectors", "0004_grant_drop_redundant_fk_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                _unindexed("actor_identity", "connectors.identity", "audit_events"),
                _unindexed("actor_user", settings.AUTH_USER_MODEL),
                _unindexed("connector", "connectors.connector", "audit_events"),
                _unindexed("device", "connectors.device", "audit_events"),
                _unindexed("grant", "connectors.grant", "audit_events"),
                _unindexed("ingest_key", "audit.ingestkey"),
                _unindexed("source", "connectors.identitysource"),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
        migrations.CreateModel(
            name="UsageRollup",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("sequence", models.BigIntegerField(default=0)),
                ("rolled_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("id", 1)), name="usagerollup_single_row")
                ],
            },
        ),
    ]
