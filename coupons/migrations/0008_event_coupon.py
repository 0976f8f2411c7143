"""A coupon's event history (its detail page) read by an index, not a scan of every event.

The events table is the largest (100M+ rows in production) and every claim writes to
it: on PostgreSQL the index is built ``CONCURRENTLY`` (``couponsite.indexes``), so the
migration is not atomic; elsewhere (SQLite) the schema editor adds it as usual. The
model state gets the index either way (``CustomerEvent.Meta``).
"""

from django.db import migrations, models

from couponsite.indexes import POSTGRESQL, index_create, index_drop

INDEX = models.Index(fields=["coupon", "-id"], name="event_coupon")


def create_index(apps, schema_editor):
    model = apps.get_model("coupons", "CustomerEvent")
    if schema_editor.connection.vendor != POSTGRESQL:
        schema_editor.add_index(model, INDEX)
        return
    coupon, pk = (schema_editor.quote_name(model._meta.get_field(name).column) for name in ("coupon", "id"))
    index_create(schema_editor, INDEX.name, model._meta.db_table, f"({coupon}, {pk} DESC)")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != POSTGRESQL:
        schema_editor.remove_index(apps.get_model("coupons", "CustomerEvent"), INDEX)
        return
    index_drop(schema_editor, INDEX.name)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ('coupons', '0007_customer_search_trigram'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="customerevent", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index, elidable=False)],
        ),
    ]
