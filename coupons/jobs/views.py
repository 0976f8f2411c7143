"""The Jobs page (every background job the user may see), a job's live card, and the
Resume and Cancel buttons of every kind."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView

from pools.selectors import pool_list_visible

from .base import JobStatus
from .engine import QUEUE_UNREACHABLE, JobRefused, is_lock_timeout, job_cancel, job_resume
from .registry import kind_of, kinds
from .selectors import JobFilters, job_get_visible, jobs_page

PAGE_SIZE = 50


class JobFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False, label="Kind")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *JobStatus.choices], label="Status")
    pool_text = forms.CharField(required=False, max_length=200, label="Pool", strip=True,
                                widget=forms.TextInput(attrs={"class": "form-control", "placeholder": "Name or external ID"}))
    # A pool's own pages link here with ?pool=<id> (a select of 10,000 pools helps nobody).
    pool = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["kind"].choices = [("", "Any kind"), *dict((kind.name, kind.label) for kind in kinds()).items()]
        for name in ("kind", "status"):
            self.fields[name].widget.attrs["class"] = "form-select"

    def clean_pool(self):
        pk = self.cleaned_data["pool"]
        self.pool_object = pool_list_visible(user=self.user).filter(pk=pk).first() if pk else None
        return self.pool_object.pk if self.pool_object else None

    def filters(self) -> JobFilters:
        if not self.is_valid():
            return JobFilters()
        data = self.cleaned_data
        return JobFilters(kind=data["kind"], status=data["status"], pool=data["pool"],
                          pool_text=data["pool_text"].replace("\x00", ""))


class JobListView(TemplateView):
    """Every job the user may see, newest first, with live progress while any runs."""

    template_name = "jobs/job_list.html"

    def get_template_names(self):
        return ["jobs/_table.html"] if self.request.htmx else [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = JobFilterForm(self.request.GET or None, user=self.request.user)
        page = jobs_page(user=self.request.user, filters=form.filters(), after=self.request.GET.get("after"), size=PAGE_SIZE)
        query = self.request.GET.copy()
        query.pop("after", None)
        context.update(
            form=form, page=page, any_live=any(job.is_live for _, job in page.rows),
            pool_shown=getattr(form, "pool_object", None),
            filter_query=query.urlencode(), filtered=any(self.request.GET.get(k) for k in ("kind", "status", "pool", "pool_text")),
        )
        return context


def next_url(request, fallback: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return candidate
    return fallback


class JobCardView(View):
    """A job's card, polled while it is queued or running. With ``refresh=1`` (the page
    that shows what the job changes), the page reloads itself when the job ends."""

    def get(self, request, kind, pk):
        job = job_get_visible(kind=kind, pk=pk, user=request.user)
        response = render(request, "jobs/_card.html", {"job": job, "kind": kind_of(job), "refresh": request.GET.get("refresh")})
        if request.GET.get("refresh") and not job.is_live and request.htmx:
            response["HX-Refresh"] = "true"
        return response


class JobActionView(View):
    """POST: resume or cancel a job of any kind (the kind says which permission it takes)."""

    ACTIONS = {"resume": job_resume, "cancel": job_cancel}

    def post(self, request, kind, pk, action):
        if action not in self.ACTIONS:
            raise Http404("No such action.")
        job = job_get_visible(kind=kind, pk=pk, user=request.user)
        job_kind = kind_of(job)
        if job_kind.permission and not request.user.has_perm(job_kind.permission):
            raise PermissionDenied
        draft = job.status == JobStatus.DRAFT
        try:
            job = self.ACTIONS[action](job=job, user=request.user)
        except JobRefused as exc:
            messages.error(request, str(exc))
        except OperationalError as exc:
            if not is_lock_timeout(exc):  # SQLite: the worker's chunk holds the database
                raise
            messages.error(request, f"{job_kind.label} #{job.pk} is busy with a chunk of its work; try again in a moment.")
        else:
            done = "resumed." if action == "resume" else ("discarded." if draft else "cancelled.")
            say_queued(request, job, f"{job_kind.label} #{job.pk} {done}")
        return redirect(next_url(request, reverse("coupons:jobs")))


def say_queued(request, job, done: str) -> None:
    """The message after submitting or resuming a job: plain about a broker that was down
    (now, or when the same form was sent before)."""
    if job.dispatch_failed or (job.status == JobStatus.QUEUED and job.message == QUEUE_UNREACHABLE):
        messages.warning(request, f"{done} {QUEUE_UNREACHABLE}")
    else:
        messages.success(request, done)


class JobFragmentView(View):
    """GET: the htmx fragment a kind's own page polls for one of its jobs."""

    kind = ""
    template_name = ""
    context_name = "job"

    def extra_context(self, job) -> dict:
        return {}

    def get(self, request, pk):
        job = job_get_visible(kind=self.kind, pk=pk, user=request.user)
        return render(request, self.template_name, {self.context_name: job, **self.extra_context(job)})
