from celery import shared_task

from coupons.tasks import RETRYABLE

from . import services
from .parsing import FileProblem


@shared_task(bind=True, acks_late=True, autoretry_for=RETRYABLE, retry_backoff=True, max_retries=5)
def run_import(self, job_id: int) -> None:
    """Run an import; a deadlock or lost connection retries from the last committed chunk."""
    try:
        services.import_run(job_id=job_id)
    except RETRYABLE:
        raise
    except FileProblem as exc:
        services.import_fail(job_id=job_id, error=str(exc))
    except Exception as exc:
        services.import_interrupt(
            job_id=job_id, error=f"Stopped by an unexpected error: {exc}. Resume the import to go on."
        )
        raise


@shared_task
def mark_interrupted_imports() -> int:
    return services.import_mark_interrupted()
