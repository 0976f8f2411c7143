"""Trigram indexes for the Customers page's search by part of an ID or email.

PostgreSQL only (pg_trgm ships with it): on SQLite, the embedded default, this migration
does nothing and the search scans the table, which a laptop's few customers allow. The
indexes are kept out of the model state (``Customer.Meta``) on purpose: a GIN index
there would be created on SQLite too, where it does not exist.

Built ``CONCURRENTLY`` (``couponsite.indexes``: customers are written by every claim
that names a new one), so the migration is not atomic. pg_trgm is a trusted extension
(PostgreSQL 13+): a role with the CREATE privilege on the database may create it; a role
that may not stops here with an error saying what to run (README, Production).
"""

from django.db import migrations

from couponsite.indexes import POSTGRESQL, extension_ensure, index_create, index_drop

INDEXES = {"customer_email_trgm": "email", "customer_external_id_trgm": "external_id"}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != POSTGRESQL:
        return
    table = apps.get_model("coupons", "Customer")._meta.db_table
    extension_ensure(schema_editor, "pg_trgm")
    for name, column in INDEXES.items():
        # UPPER(column): what Django's icontains compares (UPPER(col::text) LIKE UPPER(%s)).
        index_create(schema_editor, name, table, f"USING gin (UPPER({schema_editor.quote_name(column)}) gin_trgm_ops)")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != POSTGRESQL:
        return
    for name in INDEXES:
        index_drop(schema_editor, name)  # the extension stays: others may use it


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("coupons", "0006_customer_created_for"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
