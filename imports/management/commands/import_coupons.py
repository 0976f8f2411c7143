import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from coupons.jobs.engine import JobRefused
from couponsite.wording import counted
from imports.models import ImportJob, JobStatus
from imports.parsing import DELIMITERS, ENCODINGS, FileProblem, Options
from imports.services import (
    ImportRefused,
    import_resume,
    import_run,
    import_start,
    import_upload,
    job_options,
    local_file,
)
from pools.selectors import pool_get_by_reference

DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}


class Command(BaseCommand):
    help = (
        "Import a CSV file of coupon codes into an uploaded pool in the foreground "
        "(the same service the workers run)."
    )

    def add_arguments(self, parser):
        parser.add_argument("pool", help="the pool's id or external id")
        parser.add_argument("file", nargs="?", help="the CSV file (columns code, customer, expires_at)")
        parser.add_argument(
            "--delimiter", help="one of , ; | or: comma, semicolon, tab, pipe (default: detected)"
        )
        parser.add_argument("--encoding", choices=list(ENCODINGS), help="default: detected")
        header = parser.add_mutually_exclusive_group()
        header.add_argument("--header", dest="header", action="store_true", default=None, help="the first row is a header")
        header.add_argument("--no-header", dest="header", action="store_false", help="the first row holds a code")
        parser.add_argument("--resume", type=int, metavar="IMPORT", help="resume an interrupted import instead")

    def handle(self, *args, pool, file, delimiter, encoding, header, resume, **options):
        target = pool_get_by_reference(pool)
        try:
            if resume:
                job = import_resume(job=ImportJob.objects.get(pk=resume, pool=target), enqueue=False)
            elif file:
                job = self._start(target, Path(file), delimiter, encoding, header)
            else:
                raise CommandError("Give the CSV file, or --resume IMPORT.")
        except ImportJob.DoesNotExist:
            raise CommandError(f"Pool {target} has no import #{resume}.") from None
        except (FileProblem, ImportRefused, JobRefused) as exc:
            raise CommandError(str(exc)) from None
        started = time.monotonic()
        try:
            job = import_run(job_id=job.pk, progress=self._progress(started))
        except KeyboardInterrupt:
            raise CommandError(f"Stopped. Finish it with: import_coupons {pool} --resume {job.pk}") from None
        self.stdout.write("")
        if job.status != JobStatus.DONE:
            hint = f" Finish it with: import_coupons {pool} --resume {job.pk}" if job.can_resume else ""
            raise CommandError(f"Import #{job.pk} is {job.get_status_display().lower()}: {job.message}{hint}")
        self.stdout.write(self.style.SUCCESS(
            f"Import #{job.pk} into \u201c{target.name}\u201d: {counted(job.total, 'row', 'rows')} read, "
            f"{counted(job.created, 'coupon', 'coupons')} created, "
            f"{counted(job.duplicates_in_file, 'duplicate', 'duplicates')} in the file, "
            f"{counted(job.existing, 'code that exists', 'codes that exist')} already, "
            f"{counted(job.invalid, 'invalid row', 'invalid rows')} ({time.monotonic() - started:.1f} s)."
        ))
        if job.created == 0 and job.message:
            self.stdout.write(job.message)

    def _start(self, pool, path: Path, delimiter, encoding, header) -> ImportJob:
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        if delimiter is not None:
            delimiter = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
            if delimiter not in DELIMITERS:
                raise CommandError("The delimiter must be one of , ; | or comma, semicolon, tab, pipe.")
        with local_file(path) as handle:
            job = import_upload(file=handle, name=path.name, pool=pool)
        guessed = job_options(job)
        options = Options(
            delimiter=delimiter or guessed.delimiter,
            has_header=guessed.has_header if header is None else header,
            encoding=encoding or guessed.encoding,
        )
        return import_start(job=job, pool=pool, options=options, enqueue=False)

    def _progress(self, started):
        tty = sys.stdout.isatty()

        def show(job):
            bar = "#" * int(job.percent * 30 / 100)
            what = f"reading {counted(job.total, 'row', 'rows')}" if job.phase == "reading" else (
                f"{job.processed:,} / {counted(job.total, 'row', 'rows')}, {job.created:,} created"
            )
            line = f"[{bar:<30}] {job.percent:3d}%  {what}"
            self.stdout.write(f"\r{line:<90}" if tty else line, ending="" if tty else "\n")
            self.stdout.flush()

        return show
