import django_tables2 as tables
from django.utils.safestring import mark_safe

from couponsite.tables import BaseTable

from .models import CouponPool, value_text


class PoolTable(BaseTable):
    name = tables.Column(linkify=("pools:overview", {"pk": tables.A("pk")}))
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
        return value_text(record.coupon_type, record.value, record.currency) or mark_safe(
            "<span class=\"text-body-secondary\">\u2014</span>"
        )
