import datetime

import django_filters
from django import forms
from django.utils import timezone

from couponsite.filters import BaseFilterSet

from .models import Coupon, CouponStatus
from .selectors import coupons_search

DATE = forms.DateInput(attrs={"type": "date"})


class CouponFilter(BaseFilterSet):
    q = django_filters.CharFilter(
        method="search",
        label="Search",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Code, customer ID or email"}),
    )
    match = django_filters.ChoiceFilter(
        method="ignore",
        choices=[("prefix", "Code starts with"), ("exact", "Exact code")],
        empty_label=None,
        label="Code match",
    )
    status = django_filters.ChoiceFilter(
        method="by_status", choices=CouponStatus.slug_choices(), empty_label="Any status"
    )
    claimed_from = django_filters.DateFilter(field_name="claimed_at", method="day_from", label="Claimed from", widget=DATE)
    claimed_to = django_filters.DateFilter(field_name="claimed_at", method="day_to", label="Claimed to", widget=DATE)
    expires_from = django_filters.DateFilter(field_name="expires_at", method="day_from", label="Expires from", widget=DATE)
    expires_to = django_filters.DateFilter(field_name="expires_at", method="day_to", label="Expires to", widget=DATE)

    class Meta:
        model = Coupon
        fields = ["q", "match", "status", "claimed_from", "claimed_to", "expires_from", "expires_to"]

    def search(self, queryset, name, value):
        mode = self.form.cleaned_data.get("match") or "prefix"
        return coupons_search(queryset, text=value, mode=mode)

    def ignore(self, queryset, name, value):
        return queryset  # read by search()

    # Whole days as timestamp ranges (not ``__date``), so the (pool, date) indexes apply.
    def day_from(self, queryset, name, value):
        return queryset.filter(**{f"{name}__gte": _day_start(value)})

    def day_to(self, queryset, name, value):
        return queryset.filter(**{f"{name}__lt": _day_start(value + datetime.timedelta(days=1))})

    def by_status(self, queryset, name, value):
        return queryset.filter(status=CouponStatus.from_slug(value))


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
