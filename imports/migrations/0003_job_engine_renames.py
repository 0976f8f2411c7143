# Imports move onto the shared job lifecycle (coupons.jobs.base.Job): the file's rows are
# its ``total``, the time its task was sent is ``dispatched_at``.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("imports", "0002_import_queued_at")]

    operations = [
        migrations.RenameField("importjob", "rows_read", "total"),
        migrations.RenameField("importjob", "queued_at", "dispatched_at"),
    ]
