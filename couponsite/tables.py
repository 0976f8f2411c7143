"""The base table every list page builds on (django-tables2)."""

import django_tables2 as tables


class BaseTable(tables.Table):
    class Meta:
        attrs = {"class": "table table-hover align-middle mb-0"}
        template_name = "django_tables2/bootstrap5-responsive.html"
        empty_text = "Nothing here yet."
