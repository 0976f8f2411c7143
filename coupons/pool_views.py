"""The pool pages that need coupons: the list with each pool's stock, the overview (stock
by status, the terms, recent jobs), the form (create and edit) and its live preview of
what an edit's update method would change. Here, not in ``pools``, because they count
coupons or move them (``coupons.propagation``). Their URLs keep the ``pools:`` names
(``couponsite.urls``)."""

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View
from django.views.generic import FormView, TemplateView

from couponsite.counting import count_with_accuracy
from pools import views as pool_pages
from pools.models import CouponPool, PoolSource
from pools.models.lock import PoolLock
from pools.patterns import PatternError
from pools.selectors import pool_get_visible, pool_terms_shown, terms_catalog
from pools.services import pool_create

from . import selectors
from .forms import PoolEditForm
from .generation import pool_generation_capacity
from .jobs.selectors import JobFilters, jobs_page
from .propagation import ASYNC_THRESHOLD, UpdateMethod, affected_coupons, pool_update
from .tables import PoolStockTable
from .views import PoolTabMixin

RECENT_JOBS = 5


class PoolListView(pool_pages.PoolListView):
    """The pool list, with each shown pool's stock (``selectors.pool_stock``)."""

    table_class = PoolStockTable


class PoolOverviewView(PoolTabMixin, TemplateView):
    """The pool's first tab and the page after saving it: stock by status, the terms a
    coupon gets (everything the API enforces), the source, recent jobs."""

    tab = "overview"
    template_name = "pools/pool_overview.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        pool = self.pool
        counts = selectors.pool_status_summary(pool=pool)
        terms = pool_terms_shown(pool)
        context.update(
            counts=counts,
            terms=terms,
            catalog=terms_catalog(terms),
            terms_version=terms.version,
            # The source lock from the counts above (no second count), with its own reason.
            lock=PoolLock.from_count(counts.total, counts.total_is_estimate,
                                     generation_started=pool.generation_started_at is not None),
            recent_jobs=jobs_page(user=self.request.user, filters=JobFilters(pool=pool.pk), size=RECENT_JOBS).rows,
            **self.source_context(pool, counts),
        )
        return context

    @staticmethod
    def source_context(pool: CouponPool, counts) -> dict:
        """What limits the pool's supply: a bulk pool's generation capacity, a generated
        pool's pattern (1% of its combinations, against guessing)."""
        if pool.source == PoolSource.BULK:
            return {"capacity": pool_generation_capacity(pool)}
        if pool.source != PoolSource.GENERATED:
            return {}
        try:
            pattern = pool.compiled_pattern()
        except PatternError:
            return {}
        if pattern is None or pattern.is_generic:
            return {"pattern_info": pattern}
        return {"pattern_info": pattern, "room": max(0, pattern.max_coupons - counts.total)}


class PoolFormView(PermissionRequiredMixin, FormView):
    """Create (no pk) or edit (pk) a pool; writes go through the services."""

    form_class = PoolEditForm
    template_name = "pools/pool_form.html"
    pool: CouponPool | None = None

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        if "pk" in kwargs:
            self.pool = pool_get_visible(user=request.user, pk=kwargs["pk"])

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
                pool = pool_create(actor=self.request.user, **fields)
                messages.success(self.request, f"Coupon pool \u201c{pool.name}\u201d created.")
            else:
                pool, propagation = pool_update(
                    pool=self.pool, actor=self.request.user, **fields, **form.update_options()
                )
                text = f"Coupon pool \u201c{pool.name}\u201d saved."
                if form.pattern_warning:
                    text += " " + form.pattern_warning
                if propagation is not None:
                    text += " " + propagation.message()
                messages.success(self.request, text)
        except ValidationError as exc:
            form.add_error(None, exc)
            return self.form_invalid(form)
        return redirect("pools:overview", pk=pool.pk)

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


class UpdatePreviewView(View):
    """htmx fragment: how many coupons the chosen update method would change."""

    def get(self, request, pk):
        pool = pool_get_visible(user=request.user, pk=pk)
        method = request.GET.get("update_method") or UpdateMethod.NONE
        if method not in UpdateMethod.values:
            method = UpdateMethod.NONE
        coupons = affected_coupons(
            pool=pool, old_terms=pool.current_terms, method=method,
            matching=bool(request.GET.get("update_matching")),
        )
        count, estimated = count_with_accuracy(coupons)
        context = {"method": method, "count": count, "estimated": estimated, "threshold": ASYNC_THRESHOLD}
        return render(request, "pools/_update_preview.html", context)
