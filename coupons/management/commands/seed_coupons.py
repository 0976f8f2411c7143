import time

from django.core.management.base import BaseCommand, CommandError

from coupons.seeding import coupons_seed
from couponsite.wording import counted
from pools.selectors import pool_get_by_reference


class Command(BaseCommand):
    help = "Fill a pool with a realistic mix of coupons (60% unassigned, 25% claimed, ...) for demos and benches."

    def add_arguments(self, parser):
        parser.add_argument("pool", help="the pool's id or external id")
        parser.add_argument("--count", type=int, default=10_000)

    def handle(self, *args, pool, count, **options):
        if count < 1:
            raise CommandError("--count must be at least 1.")
        target = pool_get_by_reference(pool)
        started = time.monotonic()

        def progress(done):
            self.stdout.write(f"\r  {done:,} / {count:,}", ending="")
            self.stdout.flush()

        added = coupons_seed(pool=target, count=count, progress=progress)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(
            f"Added {counted(added, 'coupon', 'coupons')} to \u201c{target.name}\u201d in {time.monotonic() - started:.1f} s."
        ))
