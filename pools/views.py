from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.shortcuts import redirect, render
from django.views import View
from django.views.generic import FormView
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from . import patterns, selectors, services
from .filters import PoolFilter
from .forms import ModuleSettingsForm
from .models import ModuleSettings, PoolSource
from .tables import PoolTable


class PoolListView(SingleTableMixin, FilterView):
    table_class = PoolTable
    filterset_class = PoolFilter
    template_name = "pools/pool_list.html"
    paginate_by = 50

    def get_queryset(self):
        return selectors.pool_list_visible(user=self.request.user)

    def get_table_kwargs(self):
        if self.request.user.has_perm("pools.add_couponpool"):
            return {}
        return {"empty_text": "No coupon pools match."}  # the table's own text offers "Create coupon pool"


class CombinationsView(View):
    """htmx fragment: the live "Number of unique combinations" under the pattern field."""

    def get(self, request):
        source = request.GET.get("source") or PoolSource.BULK
        text = (request.GET.get("pattern") or "").strip()
        bulk = source == PoolSource.BULK
        context = {"pattern_text": text, "bulk": bulk}
        if text:
            try:
                pattern = patterns.parse_pattern(
                    text,
                    request.GET.get("excluded_characters", "") if bulk else "",
                    request.GET.get("excluded_phrases", "") if bulk else "",
                )
            except patterns.PatternError as exc:
                context["error"] = str(exc)
            else:
                context["pattern"] = pattern
                context["too_few_placeholders"] = (
                    bulk and pattern.placeholder_count < patterns.MIN_BULK_PLACEHOLDERS
                )
                context["min_placeholders"] = patterns.MIN_BULK_PLACEHOLDERS
                if pattern.excluded_phrases and not pattern.is_generic:
                    context["phrase_percent"] = percent_text(patterns.estimate_phrase_share(pattern))
        return render(request, "pools/_combinations.html", context)


def percent_text(share: float) -> str:
    """An estimated share in words: 0.0004 -> "about 0.04%", 0.9999 -> "more than 99.9%",
    0 -> "less than 0.01%" (never "about less than")."""
    percent = share * 100
    if percent < 0.01:
        return "less than 0.01%"
    if percent > 99.9:
        return "more than 99.9%"
    digits = f"{percent:.2f}" if percent < 10 else f"{percent:.1f}"
    return f"about {digits.rstrip('0').rstrip('.')}%"


class ModuleSettingsView(PermissionRequiredMixin, FormView):
    permission_required = "pools.change_modulesettings"
    form_class = ModuleSettingsForm
    template_name = "pools/settings.html"

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["instance"] = ModuleSettings.load()
        return kwargs

    def form_valid(self, form):
        services.module_settings_update(auto_redeem=form.cleaned_data["auto_redeem"])
        messages.success(self.request, "Coupon module settings saved.")
        return redirect("pools:settings")
