"""Template helpers shared by every page that shows background jobs."""

import uuid

from django import template
from django.utils.html import format_html
from django.utils.translation import ngettext

from coupons.jobs.base import JobStatus
from coupons.jobs.registry import kind_of

register = template.Library()

STATUS_BADGES = {
    JobStatus.DRAFT: "text-bg-light border",
    JobStatus.QUEUED: "text-bg-info",
    JobStatus.RUNNING: "text-bg-primary",
    JobStatus.INTERRUPTED: "text-bg-warning",
    JobStatus.FAILED: "text-bg-danger",
    JobStatus.DONE: "text-bg-success",
    JobStatus.CANCELLED: "text-bg-secondary",
}


@register.filter
def status_badge(job):
    return format_html('<span class="badge {}" data-testid="job-status">{}</span>', STATUS_BADGES[job.status],
                       job.get_status_display())


@register.simple_tag(takes_context=True)
def submission_field(context):
    """A one-time key for a form that starts a job: the same form sent twice (a retry, a
    double click, the browser's resend) is one job (coupons.jobs.engine.job_create)."""
    request = context.get("request")
    key = (request.POST.get("submission", "") if request is not None else "")[:64] or uuid.uuid4().hex
    return format_html('<input type="hidden" name="submission" value="{}">', key)


@register.filter
def job_kind(job):
    return kind_of(job)


@register.filter
def job_title(job):
    return kind_of(job).describe(job) or kind_of(job).label


@register.filter
def job_result_url(job):
    return kind_of(job).result_url(job)


@register.filter
def may_manage(job, user):
    """Whether ``user`` may resume or cancel ``job`` (the kind's permission)."""
    permission = kind_of(job).permission
    return not permission or user.has_perm(permission)


@register.filter
def job_unit(job):
    """The kind's unit for the job's total: "1 row", "2 rows" (both forms from the registry)."""
    singular, plural = kind_of(job).unit
    return ngettext(singular, plural, job.total)
