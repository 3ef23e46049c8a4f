"""The database itself refuses UPDATE and DELETE on audit events and checkpoints.

The only way through is the maintenance flag (see ``audit.chain.maintenance``), which exists for
the test runner's flush between transactional tests and for deliberate operator maintenance. It is
not a security boundary against a database owner, who can drop triggers anyway; it stops the
application, the admin and careless SQL. Tampering by the owner is what ``audit_verify`` and the
signed checkpoints detect.
"""

from django.db import NotSupportedError, migrations

TABLES = ("audit_auditevent", "audit_auditcheckpoint")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION lanyard_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('lanyard.audit_maintenance', true), '') = 'on' THEN
        IF TG_LEVEL = 'ROW' THEN
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def _pg_forward(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION lanyard_audit_append_only();",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION lanyard_audit_append_only();",
    ]


def _sqlite_forward(table: str) -> list[str]:
    allowed = "NOT EXISTS (SELECT 1 FROM audit_maintenance WHERE enabled = 1)"
    return [
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} WHEN {allowed} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END;",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} WHEN {allowed} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END;",
    ]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = [PG_FUNCTION]
        for table in TABLES:
            statements += _pg_forward(table)
    elif vendor == "sqlite":
        # A plain table, not a model: Django's flush does not know it, so the flag survives it.
        statements = [
            "CREATE TABLE audit_maintenance (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "enabled INTEGER NOT NULL DEFAULT 0)"
        ]
        for table in TABLES:
            statements += _sqlite_forward(table)
    else:
        # Migrating without the triggers would silently drop the audit trail's tamper protection.
        raise NotSupportedError(
            f"Lanyard runs on PostgreSQL or SQLite: the audit tables' append-only triggers "
            f"have no {vendor} form."
        )
    for sql in statements:
        schema_editor.execute(sql, params=None)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        schema_editor.execute("DROP FUNCTION IF EXISTS lanyard_audit_append_only()")
    elif vendor == "sqlite":
        for table in TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        schema_editor.execute("DROP TABLE IF EXISTS audit_maintenance")


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain_head")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
