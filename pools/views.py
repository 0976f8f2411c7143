from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View
from django.views.generic import FormView
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from . import patterns, selectors, services
from .filters import PoolFilter
from .forms import ModuleSettingsForm, PoolForm
from .models import CouponPool, ModuleSettings, PoolSource
from .tables import PoolTable


class PoolListView(SingleTableMixin, FilterView):
    table_class = PoolTable
    filterset_class = PoolFilter
    template_name = "pools/pool_list.html"
    paginate_by = 50

    def get_queryset(self):
        return selectors.pool_list_visible(user=self.request.user)


class PoolFormView(PermissionRequiredMixin, FormView):
    """Create (no pk) or edit (pk) a pool; writes go through the services."""

    form_class = PoolForm
    template_name = "pools/pool_form.html"
    pool: CouponPool | None = None

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        if "pk" in kwargs:
            self.pool = selectors.pool_get_visible(user=request.user, pk=kwargs["pk"])

    def get_permission_required(self):
        return ["pools.change_couponpool" if self.pool else "pools.add_couponpool"]

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["user"] = self.request.user
        kwargs["instance"] = self.pool
        if self.pool is None:
            kwargs["initial"] = {"source": PoolSource.UPLOADED}
        return kwargs

    def form_valid(self, form):
        fields = form.pool_fields()
        try:
            if self.pool is None:
                pool = services.pool_create(actor=self.request.user, **fields)
                messages.success(self.request, f"Coupon pool \u201c{pool.name}\u201d created.")
            else:
                pool, propagation = services.pool_update(
                    pool=self.pool, actor=self.request.user, **fields, **form.update_options()
                )
                text = f"Coupon pool \u201c{pool.name}\u201d saved."
                if propagation is not None:
                    text += " " + propagation.message()
                messages.success(self.request, text)
        except ValidationError as exc:
            form.add_error(None, exc)
            return self.form_invalid(form)
        return redirect("pools:edit", pk=pool.pk)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["pool"] = self.pool
        context["combinations_url"] = reverse("pools:combinations")
        if self.pool is not None:
            # Pool updates on their way, or stopped and waiting to be resumed.
            context["jobs"] = self.pool.jobs.filter(
                kind="propagation", status__in=["queued", "running", "interrupted", "failed"]
            ).order_by("-id")[:3]
        return context


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


class UpdatePreviewView(View):
    """htmx fragment: how many coupons the chosen update method would change."""

    def get(self, request, pk):
        from coupons.propagation import ASYNC_THRESHOLD, affected_coupons
        from coupons.selectors import count_with_accuracy

        pool = selectors.pool_get_visible(user=request.user, pk=pk)
        method = request.GET.get("update_method") or services.UpdateMethod.NONE
        if method not in services.UpdateMethod.values:
            method = services.UpdateMethod.NONE
        coupons = affected_coupons(
            pool=pool, old_terms=pool.current_terms, method=method,
            matching=bool(request.GET.get("update_matching")),
        )
        count, estimated = count_with_accuracy(coupons)
        context = {"method": method, "count": count, "estimated": estimated, "threshold": ASYNC_THRESHOLD}
        return render(request, "pools/_update_preview.html", context)


def percent_text(share: float) -> str:
    """0.0004 -> "0.04", 0.9999 -> "more than 99.9", 0 -> "less than 0.01"."""
    percent = share * 100
    if percent < 0.01:
        return "less than 0.01"
    if percent > 99.9:
        return "more than 99.9"
    return f"{percent:.2f}".rstrip("0").rstrip(".") if percent < 10 else f"{percent:.1f}".rstrip("0").rstrip(".")


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
        messages.success(self.request, "Coupon settings saved.")
        return redirect("pools:settings")
