from celery import shared_task

from coupons.tasks import RETRYABLE

from . import services
from .models import BulkOperation


@shared_task(bind=True, acks_late=True, autoretry_for=RETRYABLE, retry_backoff=True, max_retries=5)
def run_bulk_operation(self, operation_id: int) -> None:
    """Apply a bulk operation; a database error retries from the last committed chunk."""
    try:
        services.bulk_run(operation_id=operation_id)
    except RETRYABLE:
        raise
    except Exception as exc:
        BulkOperation.objects.filter(pk=operation_id).exclude(status=BulkOperation.Status.DONE).update(
            status=BulkOperation.Status.FAILED, message=f"Stopped by an unexpected error: {exc}"
        )
        raise
