import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from coupons.templatetags.job_tags import may_manage, status_badge
from couponsite.tables import BaseTable

from .models import ImportJob, JobStatus


class ImportTable(BaseTable):
    id = tables.Column(verbose_name="Import", orderable=False)
    original_name = tables.Column(verbose_name="File", orderable=False)
    pool = tables.Column(verbose_name="Coupon pool", orderable=False, empty_values=())
    status = tables.Column(orderable=False)
    total = tables.Column(verbose_name="Rows", orderable=False, attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}})
    created = tables.Column(verbose_name="Created", orderable=False, attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}})
    skipped = tables.Column(verbose_name="Skipped", orderable=False, empty_values=(), attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}})
    created_by = tables.Column(verbose_name="By", orderable=False, default="command line")
    created_at = tables.DateTimeColumn(verbose_name="Uploaded", format="Y-m-d H:i", orderable=False)

    class Meta(BaseTable.Meta):
        model = ImportJob
        fields = ("id", "original_name", "pool", "status", "total", "created", "skipped", "created_by", "created_at")
        empty_text = "No imports yet. Upload a CSV file from an uploaded pool's Coupons tab."
        row_attrs = {"data-testid": "import-row"}

    def render_id(self, record):
        if record.status != JobStatus.DRAFT:
            return format_html('<a href="{}">#{}</a>', reverse("imports:detail", args=[record.pk]), record.pk)
        if not may_manage(record, self.request.user):  # a draft is configured by who may import
            return f"#{record.pk}"
        return format_html('<a href="{}">#{}</a>', reverse("imports:configure", args=[record.pk]), record.pk)

    def render_pool(self, record):
        if record.pool is None:
            return "\u2014"
        return format_html('<a href="{}">{}</a>', reverse("coupons:pool_coupons", args=[record.pool_id]), record.pool.name)

    def render_status(self, record):
        return status_badge(record)

    def render_total(self, value):
        return f"{value:,}"

    def render_created(self, value):
        return f"{value:,}"

    def render_skipped(self, record):
        return f"{record.skipped:,}"
