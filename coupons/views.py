import csv
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView
from django_filters.views import FilterView
from django_tables2 import RequestConfig, SingleTableMixin

from pools.models import PoolSource
from pools.selectors import pool_get_visible, pool_list_visible

from . import selectors, services
from .bulk import ASYNC_THRESHOLD, BULK_ACTIONS, bulk_apply
from .filters import CouponFilter
from .forms import AssignForm, GenerationForm, GiftCardRedeemForm, TransferForm
from .generation import GenerationError, generation_resume, generation_start, pool_generation_capacity
from .jobs import job_resume, job_start
from .models import CouponJob, CouponStatus, Customer, GenerationBatch
from .services import Actor, CouponActionError
from .tables import CouponTable, CustomerCouponTable, CustomerTable

PAGE_SIZE = 50
PAGE_COUNT_EXACT_LIMIT = 20_000
FILTER_KEYS = ("q", "match", "status", "claimed_from", "claimed_to", "expires_from", "expires_to")


def _int_param(request, name):
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


def _filter_query(data) -> str:
    return urlencode([(key, data.get(key)) for key in FILTER_KEYS if data.get(key)])


class PoolTabMixin:
    """Views of one pool: 404 for a pool the user may not see."""

    tab = ""

    def dispatch(self, request, *args, **kwargs):
        self.pool = pool_get_visible(user=request.user, pk=kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(pool=self.pool, tab=self.tab)
        return context


class PoolCouponsView(PoolTabMixin, SingleTableMixin, FilterView):
    """The Coupons tab: search, filters, keyset pages, row menus and bulk actions."""

    tab = "coupons"
    table_class = CouponTable
    filterset_class = CouponFilter
    template_name = "coupons/pool_coupons.html"
    table_pagination = False

    def get_queryset(self):
        return selectors.coupons_of_pool(pool=self.pool)

    def get_table_data(self):
        self.page = selectors.keyset_page(
            self.object_list,
            after=_int_param(self.request, "after"),
            before=_int_param(self.request, "before"),
            size=PAGE_SIZE,
        )
        return self.page.rows

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = _filter_query(self.request.GET)
        matching, approximate = selectors.count_with_accuracy(self.object_list, PAGE_COUNT_EXACT_LIMIT)
        context.update(
            page=self.page,
            filter_query=query,
            matching=matching,
            matching_is_estimate=approximate,
            bulk_actions=BULK_ACTIONS.values(),
            running_jobs=self.pool.jobs.filter(status__in=["queued", "running"]).order_by("-id")[:3],
            shown_job=CouponJob.objects.filter(pool=self.pool, pk=_int_param(self.request, "job")).first(),
            is_bulk_pool=self.pool.source == PoolSource.BULK,
            is_uploaded_pool=self.pool.source == PoolSource.UPLOADED,
            has_batches=self.pool.generation_batches.exists(),
            has_coupons=self.page.rows or selectors.coupons_of_pool(pool=self.pool).exists(),
            filtered=any(self.request.GET.get(k) for k in FILTER_KEYS),
        )
        return context


class PoolCouponsBulkView(PermissionRequiredMixin, PoolTabMixin, View):
    """POST: apply a bulk action to the ticked coupons, or to all matching the filters.

    The coupons are re-selected through the same filter set as the list, so posted
    ids only narrow that selection and are never trusted on their own.
    """

    permission_required = "coupons.change_coupon"

    def post(self, request, pk):
        action = BULK_ACTIONS.get(request.POST.get("action", ""))
        if action is None:
            return HttpResponseBadRequest("Unknown bulk action.")
        filters = {key: request.POST.get(key) for key in FILTER_KEYS if request.POST.get(key)}
        filterset = CouponFilter(filters, queryset=selectors.coupons_of_pool(pool=self.pool))
        if not filterset.is_valid():
            messages.error(request, "The filters are not valid; nothing was changed.")
            return redirect(self._back(filters))
        coupons = filterset.qs
        ids = None
        if request.POST.get("select_all") != "1":
            ids = [int(i) for i in request.POST.getlist("selected") if i.isdigit()]
            if not ids:
                messages.warning(request, "Tick at least one coupon first.")
                return redirect(self._back(filters))
            coupons = coupons.filter(id__in=ids)
        total = selectors.count_or_estimate(coupons)
        if total > ASYNC_THRESHOLD:
            job = job_start(
                kind=CouponJob.Kind.BULK_ACTION, pool=self.pool, user=request.user, total=total,
                params={"action": action.name, "filters": filters, "ids": ids, "user_id": request.user.pk},
            )
            messages.info(request, f"{action.label}: {total:,} coupons are being processed in the background.")
            return redirect(self._back(filters, job=job.pk))
        result = bulk_apply(action=action, queryset=coupons, pool_id=self.pool.pk, actor=Actor.of_user(request.user))
        level = messages.SUCCESS if result.applied else messages.WARNING
        messages.add_message(request, level, result.message(action))
        return redirect(self._back(filters))

    def _back(self, filters, **extra):
        query = urlencode({**filters, **extra})
        return reverse("coupons:pool_coupons", args=[self.pool.pk]) + (f"?{query}" if query else "")


class PoolGenerationView(PoolTabMixin, TemplateView):
    """Bulk generation: how many the pool can still take, the form, the batch history."""

    tab = "coupons"
    template_name = "coupons/pool_generation.html"

    def get_context_data(self, form=None, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            form=form or GenerationForm(),
            capacity=pool_generation_capacity(self.pool),
            batches=self.pool.generation_batches.select_related("created_by")[:20],
            is_bulk_pool=self.pool.source == PoolSource.BULK,
        )
        return context

    def post(self, request, pk):
        if not request.user.has_perm("coupons.add_coupon"):
            raise PermissionDenied
        form = GenerationForm(request.POST)
        if form.is_valid():
            try:
                generation_start(pool=self.pool, count=form.cleaned_data["count"], user=request.user)
            except GenerationError as exc:
                form.add_error("count", str(exc))
            else:
                messages.success(request, f"Generating {form.cleaned_data['count']:,} coupons.")
                return redirect("coupons:pool_generation", pk=self.pool.pk)
        return self.render_to_response(self.get_context_data(form=form))


class ProgressView(View):
    """htmx fragment polled for the progress of long work; POST resumes it.

    Subclasses name the row's model, its fragment, the permission to resume, the
    service that resumes it and the error that service raises.
    """

    model = None
    template_name = ""
    context_name = ""
    resume_permission = ""
    resume_error: type[Exception] = ValueError

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.object = get_object_or_404(self.model.objects.select_related("pool"), pk=kwargs["pk"])
        pool_get_visible(user=request.user, pk=self.object.pool_id)

    def get(self, request, pk):
        return render(request, self.template_name, {self.context_name: self.object})

    def post(self, request, pk):
        if not request.user.has_perm(self.resume_permission):
            raise PermissionDenied
        try:
            self.resume()
        except self.resume_error as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Resuming {self.context_name} #{self.object.pk}.")
        candidate = request.POST.get("next", "")
        if url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}):
            return redirect(candidate)
        return redirect(self.back_url())


class GenerationBatchView(ProgressView):
    model, template_name, context_name = GenerationBatch, "coupons/_generation_batch.html", "batch"
    resume_permission, resume_error = "coupons.add_coupon", GenerationError

    def resume(self):
        generation_resume(batch=self.object)

    def back_url(self):
        return reverse("coupons:pool_generation", args=[self.object.pool_id])


class CouponActionView(PermissionRequiredMixin, View):
    """A row action: GET renders the confirmation dialog, POST does it."""

    permission_required = "coupons.change_coupon"

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.coupon = selectors.coupon_get_visible(user=request.user, pk=kwargs["coupon_pk"])
        self.action = kwargs["action"]
        if self.action not in services.SINGLE_ACTIONS:
            raise Http404("Unknown action.")

    def next_url(self):
        candidate = self.request.POST.get("next") or self.request.GET.get("next") or ""
        if url_has_allowed_host_and_scheme(candidate, allowed_hosts={self.request.get_host()}):
            return candidate
        return reverse("coupons:pool_coupons", args=[self.coupon.pool_id])

    def form_class(self):
        if self.action == "transfer":
            return TransferForm
        if self.action == "redeem" and self.coupon.effective_terms.is_gift_card:
            return GiftCardRedeemForm
        return None

    def get(self, request, coupon_pk, action):
        form_class = self.form_class()
        return self.render_dialog(form_class() if form_class else None)

    def render_dialog(self, form, error=None):
        context = {"coupon": self.coupon, "action": self.action, "form": form, "error": error,
                   "next": self.next_url(), "allowed": self.action in services.allowed_actions(self.coupon)}
        return render(self.request, "coupons/_action_dialog.html", context)

    def post(self, request, coupon_pk, action):
        actor = Actor.of_user(request.user)
        kwargs = {}
        form_class = self.form_class()
        if form_class is not None:
            form = form_class(request.POST)
            if not form.is_valid():
                messages.error(request, f"{self.coupon.code}: " + " ".join(
                    str(e) for errors in form.errors.values() for e in errors))
                return redirect(self.next_url())
            kwargs = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        try:
            services.SINGLE_ACTIONS[action](coupon=self.coupon, actor=actor, **kwargs)
        except CouponActionError as exc:
            messages.error(request, f"{self.coupon.code}: {exc}")
        else:
            messages.success(request, DONE_MESSAGES[action].format(code=self.coupon.code))
        return redirect(self.next_url())


DONE_MESSAGES = {
    "invalidate": "Coupon {code} invalidated.",
    "unassign": "Coupon {code} unassigned.",
    "redeem": "Coupon {code} redeemed.",
    "unredeem": "Coupon {code} marked as unredeemed.",
    "transfer": "Coupon {code} transferred.",
}


class JobView(ProgressView):
    model, template_name, context_name = CouponJob, "coupons/_job.html", "job"
    resume_permission = "coupons.change_coupon"

    def resume(self):
        job_resume(job=self.object)

    def back_url(self):
        return reverse("coupons:pool_coupons", args=[self.object.pool_id])


class PoolCouponsExportView(PoolTabMixin, View):
    """Streams the filtered list as CSV, chunk by chunk (keyset), in constant memory."""

    HEADER = ["code", "customer", "claimed_at", "expires_at", "status", "usages", "claims", "balance"]

    def get(self, request, pk):
        filterset = CouponFilter(request.GET, queryset=selectors.coupons_of_pool(pool=self.pool))
        coupons = filterset.qs if filterset.is_valid() else filterset.queryset.none()
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response = StreamingHttpResponse(self.rows(coupons), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="coupons-pool-{self.pool.pk}-{stamp}.csv"'
        return response

    def rows(self, coupons):
        writer = csv.writer(_Echo())
        yield "\ufeff" + writer.writerow(self.HEADER)
        cursor = None
        columns = ("id", "code", "customer__external_id", "claimed_at", "expires_at", "status", "usages", "claims", "balance")
        while True:
            chunk = coupons.order_by("-id")
            if cursor is not None:
                chunk = chunk.filter(id__lt=cursor)
            rows = list(chunk.values_list(*columns)[:5000])
            if not rows:
                return
            for _id, code, customer, claimed, expires, status, usages, claims, balance in rows:
                yield writer.writerow([
                    safe_cell(code), safe_cell(customer or ""),
                    claimed.isoformat() if claimed else "", expires.isoformat() if expires else "",
                    CouponStatus(status).slug, usages, claims, "" if balance is None else balance,
                ])
            cursor = rows[-1][0]


class _Echo:
    def write(self, value):
        return value


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a leading = + - @ tab or CR."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


class PoolStatisticsView(PoolTabMixin, TemplateView):
    tab = "statistics"
    template_name = "coupons/pool_statistics.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        counts = selectors.pool_status_counts(pool=self.pool)
        context["status_counts"] = [(CouponStatus(s), n, estimated) for s, (n, estimated) in counts.items()]
        context["total"] = sum(n for n, _ in counts.values())
        context["total_is_estimate"] = any(estimated for _, estimated in counts.values())
        context["activity"] = selectors.pool_daily_activity(pool=self.pool)
        return context


# --- customers -----------------------------------------------------------------


class CustomerListView(SingleTableMixin, TemplateView):
    table_class = CustomerTable
    template_name = "coupons/customer_list.html"
    table_pagination = False

    def get_table_data(self):
        customers = selectors.customers_search(text=self.request.GET.get("q", ""))
        self.page = selectors.keyset_page(
            customers, after=_int_param(self.request, "after"), before=_int_param(self.request, "before"), size=PAGE_SIZE
        )
        return self.page.rows

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        q = self.request.GET.get("q", "")
        context.update(page=self.page, q=q, filter_query=urlencode({"q": q}) if q else "")
        return context


class CustomerDetailView(TemplateView):
    template_name = "coupons/customer_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        customer = get_object_or_404(Customer, pk=kwargs["pk"])
        user = self.request.user
        coupons = selectors.keyset_page(
            selectors.customer_coupons_visible(customer=customer, user=user),
            after=_int_param(self.request, "after"), before=None, size=PAGE_SIZE,
        )
        events = selectors.keyset_page(
            selectors.customer_events_visible(customer=customer, user=user),
            after=_int_param(self.request, "events_after"), before=None, size=PAGE_SIZE,
        )
        table = CustomerCouponTable(coupons.rows)
        RequestConfig(self.request, paginate=False).configure(table)
        context.update(
            customer=customer, table=table, coupons_page=coupons, events_page=events,
            assign_form=AssignForm(pools=pool_list_visible(user=user)),
        )
        return context


class CustomerAssignView(PermissionRequiredMixin, View):
    """"Assign a coupon from pool...": a manual claim for this customer."""

    permission_required = "coupons.change_coupon"

    def post(self, request, pk):
        customer = get_object_or_404(Customer, pk=pk)
        form = AssignForm(request.POST, pools=pool_list_visible(user=request.user))
        if not form.is_valid():
            messages.error(request, "Choose a coupon pool.")
            return redirect("coupons:customer", pk=customer.pk)
        pool = form.cleaned_data["pool"]
        try:
            coupon = services.coupon_claim(pool=pool, customer=customer, actor=Actor.of_user(request.user))
        except CouponActionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Coupon {coupon.code} from \u201c{pool.name}\u201d assigned to {customer.external_id}.")
        return redirect("coupons:customer", pk=customer.pk)
