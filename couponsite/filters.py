"""The base filter set every list page builds on (django-filter)."""

import django_filters

from .forms import BootstrapFormMixin


class BaseFilterSet(django_filters.FilterSet):
    def get_form_class(self):
        return type(f"{type(self).__name__}Form", (BootstrapFormMixin, super().get_form_class()), {})
