from django.apps import AppConfig


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "api"
    verbose_name = "JSON API"

    def ready(self):
        from . import bulk  # noqa: F401 - registers the API bulk operation kind of job
