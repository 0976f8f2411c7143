from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import FormView, TemplateView
from django_filters.views import FilterView
from django_htmx.http import HttpResponseClientRedirect
from django_tables2 import RequestConfig, SingleTableMixin

from couponsite import counting
from couponsite.wording import counted
from pools.models import PoolSource
from pools.selectors import pool_get_visible, pool_list_visible, terms_catalog

from . import selectors, services
from .access import CHANGE_COUPONS, may_change_coupons
from .actions import ACTIONS, allowed_actions
from .bulk import BULK_ACTIONS, bulk_apply, bulk_preview, bulk_submit
from .exports import EXPORT_KEPT, STREAM_LIMIT, coupons_to_export, csv_lines, export_submit
from .filters import CouponFilter
from .forms import AssignForm, CustomerForm, GenerationForm, GiftCardRedeemForm, TransferForm
from .generation import GenerationError, generation_start, pool_generation_capacity
from .jobs.selectors import job_get_visible, live_jobs
from .jobs.views import JobFragmentView, next_url, say_queued
from .services import Actor, CouponActionError
from .tables import CouponTable, CustomerCouponTable, CustomerTable, coupon_value, status_badge

PAGE_SIZE = 50
PAGE_COUNT_EXACT_LIMIT = 20_000
FILTER_KEYS = ("q", "match", "status", "claimed_from", "claimed_to", "expires_from", "expires_to")
SHOWN_JOB_KINDS = ("bulk_action", "export", "propagation")  # ?job=<kind>:<id> on the Coupons tab


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

    def get_table_kwargs(self):
        # Read-only users get the list without the ticks and the row menus.
        return {} if may_change_coupons(self.request.user) else {"exclude": ("selected", "actions")}

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
        matching, approximate = counting.count_with_accuracy(self.object_list, PAGE_COUNT_EXACT_LIMIT)
        context.update(
            page=self.page,
            filter_query=query,
            matching=matching,
            matching_is_estimate=approximate,
            bulk_actions=BULK_ACTIONS.values() if may_change_coupons(self.request.user) else (),
            job_cards=self.job_cards(),
            is_bulk_pool=self.pool.source == PoolSource.BULK,
            is_uploaded_pool=self.pool.source == PoolSource.UPLOADED,
            has_batches=self.pool.generation_batches.exists(),
            has_coupons=self.page.rows or selectors.coupons_of_pool(pool=self.pool).exists(),
            filtered=any(self.request.GET.get(k) for k in FILTER_KEYS),
        )
        return context

    def job_cards(self) -> list:
        """The pool's coupon jobs on their way, and the one just submitted (``?job=``)."""
        cards = [job for kind, job in live_jobs(user=self.request.user, pool=self.pool) if kind.name in SHOWN_JOB_KINDS][:3]
        kind, _, pk = self.request.GET.get("job", "").partition(":")
        if kind in SHOWN_JOB_KINDS and pk.isdigit():
            try:
                shown = job_get_visible(kind=kind, pk=int(pk), user=self.request.user)
            except Http404:
                shown = None
            if shown is not None and shown.pool_id == self.pool.pk and all(
                (job.kind_name, job.pk) != (shown.kind_name, shown.pk) for job in cards
            ):
                cards.insert(0, shown)
        return cards


class BulkSelectionMixin(PermissionRequiredMixin, PoolTabMixin):
    """The coupons a bulk action works on: re-selected through the same filter set as
    the list, so posted ids only narrow that selection and are never trusted on their own."""

    permission_required = CHANGE_COUPONS

    def selection(self, data):
        """``(coupons, filters, ids, problem)``: ``problem`` is ``(message level, why)``
        when there is no selection."""
        filters = {key: data.get(key) for key in FILTER_KEYS if data.get(key)}
        filterset = CouponFilter(filters, queryset=selectors.coupons_of_pool(pool=self.pool))
        if not filterset.is_valid():
            return None, filters, None, (messages.ERROR, "The filters are not valid; nothing was changed.")
        coupons, ids = filterset.qs, None
        if data.get("select_all") != "1":
            ids = [int(i) for i in data.getlist("selected") if i.isdigit()]
            if not ids:
                return None, filters, None, (messages.WARNING, "Tick at least one coupon first.")
            coupons = coupons.filter(id__in=ids)
        return coupons, filters, ids, None


class PoolCouponsBulkView(BulkSelectionMixin, View):
    """POST: apply a bulk action to the ticked coupons, or to all matching the filters."""

    def post(self, request, pk):
        action = BULK_ACTIONS.get(request.POST.get("action", ""))
        if action is None:
            return HttpResponseBadRequest("Unknown bulk action.")
        coupons, filters, ids, problem = self.selection(request.POST)
        if problem is not None:
            messages.add_message(request, *problem)
            return redirect(self._back(filters))
        planned = bulk_preview(action=action, queryset=coupons, pool_id=self.pool.pk)  # the dialog's count and decision
        if planned.background:
            total = planned.total
            job = bulk_submit(pool=self.pool, action=action, filters=filters, ids=ids, user=request.user, total=total,
                              submission=request.POST.get("submission", ""))
            say_queued(request, job, f"About {counted(total, 'coupon is', 'coupons are')} being {action.past} in the background; "
                                     "the list refreshes when they are done.")
            return redirect(self._back(filters, job=f"{job.kind_name}:{job.pk}"))
        result = bulk_apply(action=action, queryset=coupons, pool_id=self.pool.pk, actor=Actor.of_user(request.user))
        level = messages.SUCCESS if result.applied else messages.WARNING
        messages.add_message(request, level, result.message(action))
        return redirect(self._back(filters))

    def _back(self, filters, **extra):
        query = urlencode({**filters, **extra})
        return reverse("coupons:pool_coupons", args=[self.pool.pk]) + (f"?{query}" if query else "")


class PoolCouponsBulkPreviewView(BulkSelectionMixin, View):
    """htmx fragment for the bulk dialog: how many of the selection the action would
    change, and how many it would skip and why, before the manager confirms."""

    def get(self, request, pk):
        action = BULK_ACTIONS.get(request.GET.get("action", ""))
        if action is None:
            return HttpResponseBadRequest("Unknown bulk action.")
        coupons, _, _, problem = self.selection(request.GET)
        preview = None if problem else bulk_preview(action=action, queryset=coupons, pool_id=self.pool.pk)
        return render(request, "coupons/_bulk_preview.html", {
            "problem": problem[1] if problem else None, "preview": preview, "sentences": preview.sentences(action) if preview else [],
            "danger": action.action.danger,
        })


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
                batch = generation_start(pool=self.pool, count=form.cleaned_data["count"], user=request.user,
                                         submission=request.POST.get("submission", ""))
            except GenerationError as exc:
                form.add_error("count", str(exc))
            else:
                say_queued(request, batch, f"Generating {counted(batch.total, 'coupon', 'coupons')} (batch #{batch.pk}).")
                return redirect("coupons:pool_generation", pk=self.pool.pk)
        return self.render_to_response(self.get_context_data(form=form))


class GenerationBatchView(JobFragmentView):
    kind, template_name, context_name = "generation", "coupons/_generation_batch.html", "batch"


class CouponActionView(PermissionRequiredMixin, View):
    """A row action: GET renders the confirmation dialog, POST does it."""

    permission_required = CHANGE_COUPONS

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.coupon = selectors.coupon_get_visible(user=request.user, pk=kwargs["coupon_pk"])
        self.action = ACTIONS.get(kwargs["action"])
        if self.action is None:
            raise Http404("Unknown action.")

    def next_url(self):
        return next_url(self.request, reverse("coupons:pool_coupons", args=[self.coupon.pool_id]))

    def form_class(self):
        if self.action.name == "transfer":
            return TransferForm
        if self.action.name == "redeem" and self.coupon.effective_terms.is_gift_card:
            return GiftCardRedeemForm
        return None

    def get(self, request, coupon_pk, action):
        form_class = self.form_class()
        return self.render_dialog(form_class() if form_class else None)

    def render_dialog(self, form, error=None, status=200):
        context = {"coupon": self.coupon, "action": self.action, "form": form, "error": error,
                   "next": self.next_url(), "allowed": self.action.allows(self.coupon)}
        return render(self.request, "coupons/_action_dialog.html", context, status=status)

    def post(self, request, coupon_pk, action):
        actor = Actor.of_user(request.user)
        kwargs = {}
        form_class = self.form_class()
        form = form_class(request.POST) if form_class is not None else None
        if form is not None:
            if not form.is_valid():
                return self.refused(form)
            kwargs = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        try:
            self.action.service(coupon=self.coupon, actor=actor, **kwargs)
        except CouponActionError as exc:
            if form is not None:
                form.place_error(exc)
            return self.refused(form, error=None if form is not None else str(exc))
        messages.success(request, self.action.done_message(self.coupon.code))
        if request.htmx:
            return HttpResponseClientRedirect(self.next_url())
        return redirect(self.next_url())

    def refused(self, form, error=None):
        """The dialog again, with what was typed and why it was refused (422: htmx swaps
        it into the open dialog, ``action_dialog.js``). Without JavaScript the form was a
        page's post: back to the list with the reason."""
        if self.request.htmx:
            # The coupon as it is now: the refused service changed nothing.
            self.coupon = selectors.coupon_get_visible(user=self.request.user, pk=self.coupon.pk)
            return self.render_dialog(form, error=error, status=422)
        reasons = [error] if error else [str(e) for errors in form.errors.values() for e in errors]
        messages.error(self.request, f"{self.coupon.code}: " + " ".join(reasons))
        return redirect(self.next_url())


class PoolCouponsExportView(PoolTabMixin, View):
    """GET: the filtered list as CSV, streamed at once when small; a larger one is
    offered as a background export (POST), whose file is ready on the Jobs page."""

    def get(self, request, pk):
        coupons = coupons_to_export(self.pool, request.GET)
        total, approximate = counting.count_with_accuracy(coupons, STREAM_LIMIT)
        if total > STREAM_LIMIT:
            return render(request, "coupons/export_confirm.html", {
                "pool": self.pool, "tab": "coupons", "total": total, "approximate": approximate,
                "filters": self.filters(request.GET), "filter_query": _filter_query(request.GET),
                "kept_days": EXPORT_KEPT.days,
            })
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response = StreamingHttpResponse(csv_lines(coupons), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="coupons-pool-{self.pool.pk}-{stamp}.csv"'
        return response

    def post(self, request, pk):
        filters = self.filters(request.POST)
        total = counting.count_or_estimate(coupons_to_export(self.pool, filters))
        job = export_submit(pool=self.pool, filters=filters, compress=bool(request.POST.get("compress")),
                            user=request.user, total=total, submission=request.POST.get("submission", ""))
        say_queued(request, job, f"Export #{job.pk} of about {counted(total, 'coupon', 'coupons')} is being written; "
                                 "its download link appears here and on the Jobs page.")
        query = urlencode({**filters, "job": f"export:{job.pk}"})
        return redirect(reverse("coupons:pool_coupons", args=[self.pool.pk]) + f"?{query}")

    @staticmethod
    def filters(data) -> dict:
        return {key: data.get(key) for key in FILTER_KEYS if data.get(key)}


class ExportDownloadView(View):
    """The file of a finished export, to users who may see its pool."""

    def get(self, request, pk):
        job = job_get_visible(kind="export", pk=pk, user=request.user)
        if not job.is_downloadable:
            raise Http404("This export has no file (not finished, or expired).")
        content_type = "application/gzip" if job.compress else "text/csv; charset=utf-8"
        return FileResponse(job.file.open("rb"), as_attachment=True, filename=job.filename, content_type=content_type)


class PoolStatisticsView(PoolTabMixin, TemplateView):
    tab = "statistics"
    template_name = "coupons/pool_statistics.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        counts = selectors.pool_status_summary(pool=self.pool)
        context["status_counts"] = counts.rows
        context["total"] = counts.total
        context["total_is_estimate"] = counts.total_is_estimate
        context["activity"] = selectors.pool_daily_activity(pool=self.pool)
        return context


class CouponDetailView(TemplateView):
    """One coupon: its holder, value, the restrictions it is used under (its terms, as the
    API checks them), its events newest first and, for managers, its row actions."""

    template_name = "coupons/coupon_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        coupon = selectors.coupon_get_visible(user=user, pk=kwargs["pk"])
        terms = coupon.effective_terms
        events = selectors.keyset_page(selectors.coupon_events(coupon=coupon),
                                       after=_int_param(self.request, "events_after"), before=None, size=PAGE_SIZE)
        context.update(
            coupon=coupon, pool=coupon.pool, terms=terms, events_page=events,
            status_badge=status_badge(coupon.status), value=coupon_value(coupon),
            catalog=terms_catalog(terms),
            redemptions=coupon.redemptions.order_by("-id")[:PAGE_SIZE] if terms.is_gift_card else [],
            actions=allowed_actions(coupon) if may_change_coupons(user) else [],
        )
        return context


# --- customers -----------------------------------------------------------------


class CustomerListView(SingleTableMixin, TemplateView):
    table_class = CustomerTable
    template_name = "coupons/customer_list.html"
    table_pagination = False

    def get_table_data(self):
        customers = selectors.customers_search(text=self.request.GET.get("q", ""), user=self.request.user)
        self.page = selectors.keyset_page(
            customers, after=_int_param(self.request, "after"), before=_int_param(self.request, "before"), size=PAGE_SIZE
        )
        return self.page.rows

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        q = self.request.GET.get("q", "")
        context.update(page=self.page, q=q, filter_query=urlencode({"q": q}) if q else "",
                       search_part_min=selectors.SEARCH_PART_MIN)
        if not q and not self.page.rows:
            context["table"].empty_text = "No customers yet: the API adds them with their first claim, and managers can create one with New customer."
        return context


class CustomerDetailView(TemplateView):
    template_name = "coupons/customer_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        customer = selectors.customer_get_visible(user=user, pk=kwargs["pk"])
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


class CustomerCreateView(PermissionRequiredMixin, FormView):
    """A new customer (ID, email, currency), then their page, where a coupon can be
    assigned at once. The fields' rules are the service's, as for the API's PUT."""

    permission_required = "coupons.add_customer"
    template_name = "coupons/customer_form.html"
    form_class = CustomerForm

    def form_valid(self, form):
        external_id = form.cleaned_data["external_id"].strip()
        try:
            customer = services.customer_create(principal=self.request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_refusal(exc)
            return self.form_invalid(form)
        except CouponActionError as exc:
            form.add_refusal(str(exc), "external_id")
            # The one taken, linked only when this user may see it ("exists already"); the ID
            # of a customer they may not see is refused without a word of that customer.
            existing = None
            if exc.code == "customer_exists":
                existing = selectors.customers_search(text="", user=self.request.user).filter(
                    external_id=external_id).first()
            return self.render_to_response(self.get_context_data(form=form, existing=existing))
        messages.success(self.request, f"Customer {customer.external_id} created.")
        return redirect("coupons:customer", pk=customer.pk)


class CustomerEditView(PermissionRequiredMixin, FormView):
    """A customer's email and currency (the ID stays: shops and the API know them by it)."""

    permission_required = "coupons.change_customer"
    template_name = "coupons/customer_form.html"
    form_class = CustomerForm

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.customer = selectors.customer_get_visible(user=request.user, pk=kwargs["pk"])

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "editing": True}

    def get_initial(self):
        return {"email": self.customer.email, "currency": self.customer.currency}

    def get_context_data(self, **kwargs):
        return super().get_context_data(customer=self.customer, **kwargs)

    def form_valid(self, form):
        try:
            customer = services.customer_update(principal=self.request.user, customer=self.customer, **form.cleaned_data)
        except ValidationError as exc:
            form.add_refusal(exc)
            return self.form_invalid(form)
        except CouponActionError as exc:
            form.add_refusal(str(exc), "currency" if exc.code == "currency_held" else None)
            return self.form_invalid(form)
        messages.success(self.request, f"Customer {customer.external_id} saved.")
        return redirect("coupons:customer", pk=customer.pk)


class CustomerAssignView(PermissionRequiredMixin, View):
    """"Assign a coupon from pool...": a manual claim for this customer."""

    permission_required = CHANGE_COUPONS

    def post(self, request, pk):
        customer = selectors.customer_get_visible(user=request.user, pk=pk)
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
