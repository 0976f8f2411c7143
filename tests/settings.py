"""Test settings: the real PostgreSQL and Redis unless the environment says otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/coupons")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/14")  # the rate limits' counters, on the real Redis
os.environ.setdefault("SECRET_KEY", "test-secret-key")

from couponsite.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Uploaded files: a directory of their own, shared with the real workers the tests start.
MEDIA_ROOT = os.environ.get("TEST_MEDIA_ROOT", "/tmp/coupons-test-media")
