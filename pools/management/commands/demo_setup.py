"""Create the demo login (and a small catalog) for the quick start; prints the login."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from couponsite.permissions import MANAGER_GROUP, manager_group_ensure
from pools.models import ModuleSettings, Product, Store

DEMO_STORES = [("Flagship store, Budapest", "STORE-BUD-01"), ("Outlet, Vienna", "STORE-VIE-02")]
DEMO_PRODUCTS = [("Espresso beans 1 kg", "SKU-ESP-1000"), ("Milk frother", "SKU-FROTH-01")]


class Command(BaseCommand):
    help = "Create (or reset) the demo superuser and a small store/product catalog."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DEMO_USERNAME", "demo"))
        parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", "demo-coupons"))

    def handle(self, *args, username, password, **options):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        for name, external_id in DEMO_STORES:
            Store.objects.get_or_create(external_id=external_id, defaults={"name": name})
        for name, sku in DEMO_PRODUCTS:
            Product.objects.get_or_create(sku=sku, defaults={"name": name})
        ModuleSettings.load()
        manager_group_ensure()
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Demo login ({'created' if created else 'reset'}): "
                f"username '{username}', password '{password}'\n"
                "  Open http://127.0.0.1:8000/ and log in.\n"
                f"  Give other users the \u201c{MANAGER_GROUP}\u201d group (Admin > Users) to let them "
                "create pools and act on coupons.\n"
            )
        )
