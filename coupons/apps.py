from django.apps import AppConfig


class CouponsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "coupons"
    verbose_name = "Coupons"

    def ready(self):
        # Each module registers the kind of background job it runs (coupons.jobs.registry).
        from . import bulk, exports, generation, propagation  # noqa: F401
