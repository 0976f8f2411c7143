import sys
import time

from django.core.management.base import BaseCommand, CommandError

from coupons.generation import GenerationError, generation_resume, generation_start
from coupons.jobs.engine import JobRefused, job_run_here
from coupons.models import GenerationBatch, JobStatus
from couponsite.wording import counted
from pools.selectors import pool_get_by_reference


class Command(BaseCommand):
    help = "Generate coupons for a bulk pool in the foreground (the same service the workers run)."

    def add_arguments(self, parser):
        parser.add_argument("pool", help="the pool's id or external id")
        parser.add_argument("--count", type=int, help="how many new coupons (1 to 5,000,000)")
        parser.add_argument("--resume", type=int, metavar="BATCH", help="resume an interrupted batch instead")

    def handle(self, *args, pool, count, resume, **options):
        target = pool_get_by_reference(pool)
        try:
            if resume:
                batch = GenerationBatch.objects.get(pk=resume, pool=target)
                batch = generation_resume(batch=batch, enqueue=False)
            elif count is not None:
                batch = generation_start(pool=target, count=count, enqueue=False)
            else:
                raise CommandError("Give --count N, or --resume BATCH.")
            started = time.monotonic()
            try:
                batch = job_run_here(batch, progress=self._progress(started))
            except KeyboardInterrupt:
                raise CommandError(
                    f"Stopped. Batch #{batch.pk} keeps what it made; finish it with "
                    f"generate_coupons {pool} --resume {batch.pk}"
                ) from None
        except GenerationBatch.DoesNotExist:
            raise CommandError(f"Pool {target} has no batch #{resume}.") from None
        except (GenerationError, JobRefused) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("")
        if batch.status != JobStatus.DONE:
            raise CommandError(f"Batch #{batch.pk} is {batch.get_status_display().lower()}: {batch.message}")
        self.stdout.write(self.style.SUCCESS(
            f"Batch #{batch.pk}: {counted(batch.processed, 'coupon', 'coupons')} generated for \u201c{target.name}\u201d "
            f"in {time.monotonic() - started:.1f} s."
        ))

    def _progress(self, started):
        tty = sys.stdout.isatty()

        def show(batch):
            done = batch.processed / batch.total if batch.total else 1
            bar = "#" * int(done * 30)
            rate = batch.processed / max(time.monotonic() - started, 1e-6)
            line = f"[{bar:<30}] {batch.processed:>11,} / {batch.total:,}  {rate:,.0f}/s"
            self.stdout.write(f"\r{line}" if tty else line, ending="" if tty else "\n")
            self.stdout.flush()

        return show
