# Generation batches move onto the shared job lifecycle (coupons.jobs.base.Job): its
# counters are ``total`` and ``processed``, its text is ``message``.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("coupons", "0003_coupon_pool_terms_without_db_constraint")]

    operations = [
        migrations.RenameField("generationbatch", "requested", "total"),
        migrations.RenameField("generationbatch", "generated", "processed"),
        migrations.RenameField("generationbatch", "error", "message"),
    ]
