"""Create the demo login (and a small catalog) for the quick start; prints the login."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from couponsite.permissions import MANAGER_GROUP, manager_group_ensure
from pools.models import ModuleSettings, Product, Store

DEMO_STORES = [("Flagship store, Budapest", "STORE-BUD-01"), ("Outlet, Vienna", "STORE-VIE-02")]
DEMO_PRODUCTS = [("Espresso beans 1 kg", "SKU-ESP-1000"), ("Milk frother", "SKU-FROTH-01")]


def serving_address() -> str:
    """Where ``make run`` serves: the host and port couponsite/Procfile.dev's web line uses."""
    host = os.environ.get("WEB_HOST") or "127.0.0.1"
    port = os.environ.get("WEB_PORT") or "8000"
    return f"http://{host}:{port}/"


class Command(BaseCommand):
    help = (
        "Create the demo superuser (an existing one keeps its password) and a small "
        "store/product catalog; prints the login and the address make run serves."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DEMO_USERNAME", "demo"))
        parser.add_argument(
            "--password", default=os.environ.get("DEMO_PASSWORD", "demo-coupons"),
            help="The new demo user's password (an existing user's password is never changed).",
        )

    def handle(self, *args, username, password, **options):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        if created:
            # Only a new user gets the password: resetting it on every `make run` would
            # undo a changed password and log every session of the user out.
            user.set_password(password)
        user.save()
        for name, external_id in DEMO_STORES:
            Store.objects.get_or_create(external_id=external_id, defaults={"name": name})
        for name, sku in DEMO_PRODUCTS:
            Product.objects.get_or_create(sku=sku, defaults={"name": name})
        ModuleSettings.load()
        manager_group_ensure()
        if created:
            login = f"Demo login (created): username '{username}', password '{password}'"
        elif user.check_password(password):
            login = f"Demo login: username '{username}', password '{password}' (unchanged)"
        else:
            login = (
                f"Demo login: username '{username}', password unchanged (it is not '{password}' any more; "
                f"set a new one with: DEBUG=true .venv/bin/python manage.py changepassword {username})"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  {login}\n"
                f"  Open {serving_address()} and log in.\n"
                f"  Give other users the \u201c{MANAGER_GROUP}\u201d group (Admin > Users) to let them "
                "create pools and act on coupons.\n"
            )
        )
