"""Trigram indexes for the Customers page's search by part of an ID or email.

PostgreSQL only (pg_trgm ships with it): on SQLite, the embedded default, this migration
does nothing and the search scans the table, which a laptop's few customers allow. The
indexes are kept out of the model state (``Customer.Meta``) on purpose: a GIN index
there would be created on SQLite too, where it does not exist.
"""

from django.db import migrations

INDEXES = {"customer_email_trgm": "email", "customer_external_id_trgm": "external_id"}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("coupons", "Customer")._meta.db_table)
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        # UPPER(column): what Django's icontains compares (UPPER(col::text) LIKE UPPER(%s)).
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (UPPER({schema_editor.quote_name(column)}) gin_trgm_ops)"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")  # the extension stays: others may use it


class Migration(migrations.Migration):

    dependencies = [
        ("coupons", "0006_customer_created_for"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
