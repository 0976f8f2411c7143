import django_tables2 as tables
from django.utils.safestring import mark_safe

from couponsite.tables import BaseTable

from .models import CouponPool, CouponType


class PoolTable(BaseTable):
    # The Coupons tab opens for every user who sees the pool (Settings needs change_couponpool).
    name = tables.Column(linkify=("coupons:pool_coupons", {"pk": tables.A("pk")}))
    external_id = tables.Column(verbose_name="External ID", empty_values=(None, ""), default="")
    source = tables.Column()
    coupon_type = tables.Column(verbose_name="Type")
    value = tables.Column(empty_values=(), orderable=True)
    user_group = tables.Column(verbose_name="User group", default="")

    class Meta(BaseTable.Meta):
        model = CouponPool
        fields = ("name", "external_id", "source", "coupon_type", "value", "user_group")
        empty_text = "No coupon pools match. Create one with \u201cCreate coupon pool\u201d."

    def render_value(self, record: CouponPool):
        if record.value is None:
            return mark_safe("<span class=\"text-body-secondary\">\u2014</span>")
        if record.coupon_type == CouponType.PERCENTAGE:
            return f"{record.value}%"
        return f"{record.value} {record.currency}".strip()
