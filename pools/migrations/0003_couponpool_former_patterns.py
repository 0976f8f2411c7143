"""``CouponPool.former_patterns``: the patterns a generated pool issued codes with.

Existing pools get NULL ("not known": they may hold coupons of earlier patterns or
sources), new ones an empty list; a pool's history becomes known (empty) at its next
source or pattern change while it holds no coupon.
"""

from django.db import migrations, models

HELP = ("The earlier patterns this generated pool issued codes with (a new pattern must not "
        "overlap them); NULL when not known: it held coupons before this history was kept.")


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0002_couponterms_couponpool_current_terms_and_more"),
    ]

    operations = [
        # Without a default first, so the existing rows stay NULL (not known) ...
        migrations.AddField(
            model_name="couponpool",
            name="former_patterns",
            field=models.JSONField(null=True, editable=False, help_text=HELP),
        ),
        # ... then new pools start with an empty history.
        migrations.AlterField(
            model_name="couponpool",
            name="former_patterns",
            field=models.JSONField(null=True, default=list, editable=False, help_text=HELP),
        ),
    ]
