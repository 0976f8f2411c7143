from django.contrib import admin
from django.db.models import Q

from coupons.access import visible_jobs
from couponsite.admin import EstimatedCountPaginator, ScopedReadOnlyAdmin

from .models import ImportJob, ImportRejection


@admin.register(ImportJob)
class ImportJobAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: visible_jobs(ImportJob, user))
    list_display = ("id", "original_name", "pool", "status", "total", "created", "duplicates_in_file",
                    "existing", "invalid", "created_by", "created_at")
    list_filter = ("status",)
    list_select_related = ("pool", "created_by")
    search_fields = ("original_name", "sha256")


@admin.register(ImportRejection)
class ImportRejectionAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: Q(job__in=ImportJob.objects.filter(visible_jobs(ImportJob, user))))
    list_display = ("job", "row", "outcome", "code", "reason")
    list_filter = ("outcome",)
    raw_id_fields = ("job",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
