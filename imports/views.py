from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views import View
from django.views.generic import TemplateView
from django_tables2 import SingleTableView

from coupons.jobs.views import JobFragmentView, say_queued
from couponsite.csvstream import BOM, safe_cell, streaming_writer
from pools.selectors import pool_get_visible

from .forms import ConfigureForm, UploadForm
from .models import ImportJob, JobStatus, RowOutcome
from .parsing import DELIMITERS, ENCODINGS, FIELDS, FileProblem, Options
from .selectors import imports_visible, upload_pools
from .services import (
    REJECTIONS_KEPT,
    ImportRefused,
    earlier_import_of_same_file,
    import_preview,
    import_start,
    import_upload,
    job_options,
    max_file_size,
)
from .tables import ImportTable

MANAGE = "coupons.add_coupon"
REJECTIONS_SHOWN = 100


def _job_visible(user, pk: int) -> ImportJob:
    return get_object_or_404(imports_visible(user=user), pk=pk)


class ImportListView(SingleTableView):
    table_class = ImportTable
    template_name = "imports/import_list.html"
    paginate_by = 50

    def get_queryset(self):
        return imports_visible(user=self.request.user).order_by("-id")


class ImportUploadView(PermissionRequiredMixin, TemplateView):
    """Step 1: the fields a file may hold, and the file."""

    permission_required = MANAGE
    template_name = "imports/upload.html"

    def pool(self):
        reference = self.request.GET.get("pool", "")
        return pool_get_visible(user=self.request.user, pk=int(reference)) if reference.isdigit() else None

    def get_context_data(self, form=None, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(form=form or UploadForm(max_size=max_file_size()), fields=FIELDS, pool=self.pool())
        return context

    def post(self, request):
        form = UploadForm(request.POST, request.FILES, max_size=max_file_size())
        if getattr(request, "upload_too_large", False):
            form.is_valid()
            form.errors.pop("file", None)
            form.add_error("file", _too_large())
        elif form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = import_upload(file=upload, name=upload.name, user=request.user, pool=self.pool())
            except FileProblem as exc:
                form.add_error("file", str(exc))
            else:
                return redirect("imports:configure", pk=job.pk)
        return self.render_to_response(self.get_context_data(form=form), status=400)


def _too_large() -> str:
    return f"The file is larger than {filesizeformat(max_file_size())}, the most an import takes. Split it into smaller files."


class ImportConfigureView(PermissionRequiredMixin, TemplateView):
    """Step 2: pool, delimiter, header, encoding, mapping, with a live preview (htmx)."""

    permission_required = MANAGE
    template_name = "imports/configure.html"

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.job = _job_visible(request.user, kwargs["pk"])

    def form_for(self, data=None):
        """The form (bound to ``data``, the choices so far, or showing the job's settings)
        and the preview of the first rows as they will be read."""
        saved = job_options(self.job)
        reading = _reading_options(data, saved) if data is not None else Options(saved.delimiter, saved.has_header, saved.encoding)
        head = import_preview(self.job, reading)
        if data is None and saved.mapping:
            mapping = saved.mapping
        else:
            mapping = head.header_mapping if reading.has_header else {"code": 0}
        if data is not None and _read_as(data) != _read_as_of(reading):
            data = data.copy()  # the columns may have changed: map them again from the header
            data.update(ConfigureForm.mapping_initial(mapping))
        initial = {
            "pool": self.job.pool_id, "delimiter": reading.delimiter, "has_header": reading.has_header,
            "encoding": reading.encoding, **ConfigureForm.mapping_initial(mapping),
        }
        form = ConfigureForm(data, initial=initial, pools=upload_pools(user=self.request.user),
                             columns=head.columns or ["Column 1"])
        if form.is_bound:
            form.is_valid()  # the mapping chosen so far, whatever else is missing
            mapping = {name: form.cleaned_data[field] for name, field in ConfigureForm.MAPPED
                       if form.cleaned_data.get(field) is not None}
        # Without a code column the preview says why (e.g. the header names none).
        if "code" in mapping:
            preview = import_preview(self.job, Options(reading.delimiter, reading.has_header, reading.encoding, mapping))
        else:
            preview = head  # read with these very options above
        form.read_as = _read_as_of(reading)
        return form, preview

    def get(self, request, pk):
        if not self.job.can_start:
            return redirect("imports:detail", pk=self.job.pk)
        if request.htmx:
            form, preview = self.form_for(request.GET)
            return render(request, "imports/_configure_dynamic.html", {"form": form, "preview": preview, "job": self.job})
        form, preview = self.form_for()
        return self.render_to_response(self.context(form, preview))

    def context(self, form, preview, error=""):
        return {
            "job": self.job, "form": form, "preview": preview, "error": error,
            "earlier": earlier_import_of_same_file(self.job, among=imports_visible(user=self.request.user)),
        }

    def post(self, request, pk):
        if not self.job.can_start:
            return redirect("imports:detail", pk=self.job.pk)
        form, preview = self.form_for(request.POST)
        if form.is_valid():
            try:
                job = import_start(job=self.job, pool=form.cleaned_data["pool"], options=form.options(), user=request.user)
            except (FileProblem, ImportRefused) as exc:
                return self.render_to_response(self.context(form, preview, error=str(exc)), status=400)
            say_queued(request, job, f"Import #{job.pk} of {job.original_name} has started.")
            return redirect("imports:detail", pk=self.job.pk)
        return self.render_to_response(self.context(form, preview), status=400)


def _read_as(data) -> tuple:
    """How the columns shown were read (hidden fields of the mapping section)."""
    return data.get("read_delimiter"), data.get("read_has_header"), data.get("read_encoding")


def _read_as_of(options: Options) -> tuple:
    return options.delimiter, "1" if options.has_header else "", options.encoding


def _reading_options(data, fallback: Options) -> Options:
    delimiter, encoding = data.get("delimiter"), data.get("encoding")
    return Options(
        delimiter=delimiter if delimiter in DELIMITERS else fallback.delimiter,
        has_header=bool(data.get("has_header")),
        encoding=encoding if encoding in ENCODINGS else fallback.encoding,
    )


class ImportDetailView(TemplateView):
    """Step 3: the live progress, then the result with the rows not imported."""

    template_name = "imports/detail.html"

    def get(self, request, pk):
        job = _job_visible(request.user, pk)
        if job.status == JobStatus.DRAFT:
            return redirect("imports:configure", pk=job.pk)
        return self.render_to_response({"job": job, **_result_context(job)})


def _result_context(job: ImportJob) -> dict:
    if job.status != JobStatus.DONE:
        return {}
    kept = job.rejections.count() if job.skipped else 0
    return {
        "rejections": job.rejections.order_by("row")[:REJECTIONS_SHOWN],
        "rejections_shown": min(kept, REJECTIONS_SHOWN),
        "rejections_kept": kept,
        "rejections_limit": REJECTIONS_KEPT,
    }


class ImportProgressView(JobFragmentView):
    kind, template_name = "import", "imports/_status.html"

    def extra_context(self, job):
        return _result_context(job)


class ImportRejectionsView(View):
    """The rows that were not imported, as CSV: row, problem, reason and the row's values."""

    HEADER = ["row", "problem", "reason", "code", "customer", "expires_at"]

    def get(self, request, pk):
        job = _job_visible(request.user, pk)
        if job.status != JobStatus.DONE:
            raise Http404("The import has not finished.")
        response = StreamingHttpResponse(self.rows(job), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejected-rows.csv"'
        return response

    def rows(self, job):
        writer = streaming_writer()
        yield BOM + writer.writerow(self.HEADER)
        after = 0
        while True:
            chunk = list(
                job.rejections.filter(row__gt=after).order_by("row")
                .values_list("row", "outcome", "reason", "code", "customer", "expires_at")[:5000]
            )
            if not chunk:
                return
            for row, outcome, reason, code, customer, expires_at in chunk:
                yield writer.writerow([
                    row, RowOutcome(outcome).label, reason, safe_cell(code), safe_cell(customer), safe_cell(expires_at),
                ])
            after = chunk[-1][0]
