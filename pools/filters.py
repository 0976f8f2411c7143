import django_filters
from django import forms
from django.db.models import Q

from couponsite.filters import BaseFilterSet

from .models import CouponPool, CouponType, PoolSource


class PoolFilter(BaseFilterSet):
    q = django_filters.CharFilter(
        method="search",
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "Name or external ID", "type": "search"}),
    )
    source = django_filters.ChoiceFilter(choices=PoolSource.choices, empty_label="Any source")
    coupon_type = django_filters.ChoiceFilter(
        choices=CouponType.choices, label="Type", empty_label="Any type"
    )

    class Meta:
        model = CouponPool
        fields = ["q", "source", "coupon_type"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(external_id__icontains=value))
