from django.db import migrations, models


class Migration(migrations.Migration):
    """A coupon's event history (its detail page) read by an index, not a scan of every event."""

    dependencies = [
        ('coupons', '0007_customer_search_trigram'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='customerevent',
            index=models.Index(fields=['coupon', '-id'], name='event_coupon'),
        ),
    ]
