"""Covering indexes for the connector-activity and identity views on PostgreSQL.

The activity summary (distinct identities, devices, actions of one connector over a period) is then
answered from the index alone: for the busiest connector in bench/reports.py (1,000,000 events) the
summary went from about 380 ms to about 9 ms. SQLite has no INCLUDE, so it keeps the plain indexes.
On PostgreSQL the plain indexes declared in AuditEvent.Meta are dropped here (the covering ones serve
the same queries); a later migration that alters those two must do it with RunSQL on PostgreSQL.
"""

from django.db import migrations

FORWARD = [
    "CREATE INDEX IF NOT EXISTS audit_connector_time_cov_idx ON audit_auditevent "
    "(connector_id, occurred_at DESC) INCLUDE (actor_identity_id, device_id, action)",
    "CREATE INDEX IF NOT EXISTS audit_identity_time_cov_idx ON audit_auditevent "
    "(actor_identity_id, occurred_at DESC) INCLUDE (connector_id, device_id, action)",
    "DROP INDEX IF EXISTS audit_connector_time_idx",
    "DROP INDEX IF EXISTS audit_identity_time_idx",
]
BACKWARD = [
    "CREATE INDEX IF NOT EXISTS audit_connector_time_idx ON audit_auditevent (connector_id, occurred_at DESC)",
    "CREATE INDEX IF NOT EXISTS audit_identity_time_idx ON audit_auditevent (actor_identity_id, occurred_at DESC)",
    "DROP INDEX IF EXISTS audit_connector_time_cov_idx",
    "DROP INDEX IF EXISTS audit_identity_time_cov_idx",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in FORWARD:
            schema_editor.execute(sql)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in BACKWARD:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_append_only_triggers")]

    operations = [migrations.RunPython(forward, backward)]
