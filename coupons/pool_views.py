"""The pool form (create and edit) and its live preview of what an edit's update method
would change: here, not in ``pools``, because saving an edit moves coupons
(``coupons.propagation``). Their URLs keep the ``pools:`` names (``couponsite.urls``)."""

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View
from django.views.generic import FormView

from couponsite.counting import count_with_accuracy
from pools.models import CouponPool, PoolSource
from pools.selectors import pool_get_visible
from pools.services import pool_create

from .forms import PoolEditForm
from .propagation import ASYNC_THRESHOLD, UpdateMethod, affected_coupons, pool_update


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
