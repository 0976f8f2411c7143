"""Settings for the coupon management system.

Every value comes from the environment (django-environ). With nothing set, the product
runs on the embedded default: SQLite and kombu's file-system broker under ``var/``,
so a laptop needs no services. Production sets DATABASE_URL, CELERY_BROKER_URL,
SECRET_KEY, DEBUG=false and ALLOWED_HOSTS (see README).
"""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
)
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env")
VAR_DIR = Path(env.str("COUPONS_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env("DEBUG")
SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for a development key).")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_tables2",
    "django_filters",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "pools",
    "coupons",
    "imports",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "couponsite.middleware.RequestHygieneMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "couponsite.middleware.LoginRequiredExceptApiMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]
# Login lock-out (django-axes): LOGIN_FAILURE_LIMIT wrong passwords in a row for one
# username from one address lock that pair out for LOGIN_LOCKOUT_MINUTES (a right
# password does not get in meanwhile); a success resets the count.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "couponsite.middleware.client_ip"  # the API's rule: TRUSTED_PROXIES

ROOT_URLCONF = "couponsite.urls"
WSGI_APPLICATION = "couponsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "libraries": {"site_tags": "couponsite.templatetags.site_tags"},
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # The web server, the worker and beat share one file: WAL lets readers run while
    # a writer works, IMMEDIATE transactions avoid "database is locked" upgrade races.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pools:list"
# A form sent from a stale page: the styled 403 with the menu (couponsite/errors.py).
CSRF_FAILURE_VIEW = "couponsite.errors.csrf_failure"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
USE_THOUSAND_SEPARATOR = False

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")

SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HTTPS behind a proxy that terminates TLS (README, Production).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)


def _proxy_ssl_header(value: str):
    """``X-Forwarded-Proto: https`` (the header and the value meaning "the client used
    https") as Django's ``("HTTP_X_FORWARDED_PROTO", "https")``."""
    if not value.strip():
        return None
    name, sep, expected = value.partition(":")
    if not sep or not name.strip() or not expected.strip():
        raise environ.ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER must look like 'X-Forwarded-Proto: https', not {value!r}."
        )
    return "HTTP_" + name.strip().upper().replace("-", "_"), expected.strip()


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env.str("SECURE_PROXY_SSL_HEADER", default=""))

# Content-Security-Policy (django-csp): scripts, styles, fonts and images from this site
# only (Bootstrap's icons in its CSS are data: URIs), no inline script, style or eval, no
# framing. Every page, the admin and the Swagger UI work under it (tests/browser).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5-responsive.html"

# The largest JSON body the API reads (a bulk operation of 50,000 codes with customers
# is about 11 MB); a larger one is a 413.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES  # DRF reads a JSON body through request.body
# Rate limits of the API (api/limits.py), counted in the cache: requests per client
# address and per API key over the whole API, and failed code lookups (validate, a
# coupon by code, a refused redeem or checkout) per key and per customer, after which
# the key (or customer) is locked out of code lookups for API_LOOKUP_LOCKOUT_SECONDS.
API_RATE_PER_IP = env.str("API_RATE_PER_IP", default="120000/m")
API_RATE_PER_KEY = env.str("API_RATE_PER_KEY", default="60000/m")
API_LOOKUP_FAILURES_PER_KEY = env.str("API_LOOKUP_FAILURES_PER_KEY", default="30/10m")
API_LOOKUP_FAILURES_PER_CUSTOMER = env.str("API_LOOKUP_FAILURES_PER_CUSTOMER", default="10/10m")
API_LOOKUP_LOCKOUT_SECONDS = env.int("API_LOOKUP_LOCKOUT_SECONDS", default=600)
# Proxies in front of the application whose X-Forwarded-For is trusted (0: none; the
# client's address is then the connection's).
TRUSTED_PROXIES = env.int("TRUSTED_PROXIES", default=0)
# The cache: the rate limits' counters. Local memory on the embedded default (one
# process counts for itself); Redis in production, shared by every web process.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "api.handlers.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Coupon pools API",
    "DESCRIPTION": (
        "Claim, query and redeem coupons. Authenticate with the header "
        "`Authorization: Api-Key <key>` (keys are created by administrators). Errors are "
        '`{"status": "error", "error": {"type", "code", "message"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CouponTypeEnum": "pools.models.CouponType",
        "CouponStatusEnum": ["unassigned", "claimed", "partially_redeemed", "redeemed", "expired", "invalid"],
    },
}

# Celery: the embedded default is kombu's file-system transport, which needs no server.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Tasks are acknowledged late; Redis hands an unacknowledged task to another worker
    # after this long, so it must outlast the longest job (jobs are resumable anyway).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=12 * 3600),
        # A broker that does not answer must not hold a page: the job row is the intent,
        # and the sweeper sends what could not be sent.
        "socket_connect_timeout": env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=3.0),
    }
# Progress lives in job rows (DESIGN rule 7), not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Sending a task tries the broker twice, briefly, then gives up (see coupons.jobs.engine).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# The job engine (coupons.jobs): a running job without a heartbeat for JOB_STALE_SECONDS
# is interrupted (its worker is gone); the sweeper runs every JOB_SWEEP_INTERVAL_SECONDS,
# so a dead worker's job is marked within their sum. A queued job whose task did not
# start within JOB_RESEND_SECONDS is sent again.
JOB_STALE_SECONDS = env.float("JOB_STALE_SECONDS", default=60.0)
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10.0)
JOB_SWEEP_INTERVAL_SECONDS = env.float("JOB_SWEEP_INTERVAL_SECONDS", default=20.0)
JOB_RESEND_SECONDS = env.float("JOB_RESEND_SECONDS", default=120.0)
JOB_MAX_RETRIES = env.int("JOB_MAX_RETRIES", default=5)  # after a database error
JOB_RETRY_DELAY_SECONDS = env.float("JOB_RETRY_DELAY_SECONDS", default=5.0)  # doubled each retry
# A run whose work has not moved for this long (a lock or a storage that never answers)
# stops sending heartbeats, so that the watchdog interrupts it.
JOB_STUCK_SECONDS = env.float("JOB_STUCK_SECONDS", default=1800.0)
# A job's chunk waits this long at the most for a lock (coupons held elsewhere), then the
# task retries later: a chunk that waits for ever holds its job out of the watchdog's reach.
JOB_LOCK_WAIT_SECONDS = env.float("JOB_LOCK_WAIT_SECONDS", default=60.0)

CELERY_BEAT_SCHEDULE = {
    "expire-coupons": {
        "task": "coupons.tasks.expire_coupons",
        "schedule": env.float("EXPIRY_INTERVAL_SECONDS", default=300.0),
    },
    # A sweep not started by the next one is dropped: they never pile up.
    "sweep-jobs": {"task": "coupons.jobs.sweep", "schedule": JOB_SWEEP_INTERVAL_SECONDS,
                   "options": {"expires": JOB_SWEEP_INTERVAL_SECONDS}},
    "purge-jobs": {"task": "coupons.jobs.purge", "schedule": env.float("JOB_PURGE_INTERVAL_SECONDS", default=3600.0)},
}
# Coupons per committed chunk of a background bulk action and of a pool edit's propagation.
COUPON_BULK_CHUNK = env.int("COUPON_BULK_CHUNK", default=10_000)
COUPON_PROPAGATION_CHUNK = env.int("COUPON_PROPAGATION_CHUNK", default=20_000)
COUPON_API_BULK_CHUNK = env.int("COUPON_API_BULK_CHUNK", default=500)  # items of an API bulk operation
# CSV exports: lists up to this many coupons stream at once, larger ones are written by a
# worker into the default storage and kept this many days.
COUPON_EXPORT_STREAM_LIMIT = env.int("COUPON_EXPORT_STREAM_LIMIT", default=100_000)
COUPON_EXPORT_KEPT_DAYS = env.int("COUPON_EXPORT_KEPT_DAYS", default=7)
# Codes per bulk generation chunk (one transaction each): memory stays about flat at this.
COUPON_GENERATION_CHUNK = env.int("COUPON_GENERATION_CHUNK", default=250_000)
# Chunks one batch writes at once on PostgreSQL, each on its own connection (PostgreSQL
# spends one core per COPY; 1 turns the parallel path off).
COUPON_GENERATION_LANES = env.int("COUPON_GENERATION_LANES", default=2)
# CSV imports: the largest file accepted (bytes; uploads and import_coupons), and rows per
# committed chunk (staging and inserting).
COUPON_IMPORT_MAX_FILE_SIZE = env.int("COUPON_IMPORT_MAX_FILE_SIZE", default=1024 * 1024 * 1024)
COUPON_IMPORT_CHUNK = env.int("COUPON_IMPORT_CHUNK", default=250_000)
FILE_UPLOAD_HANDLERS = ["imports.uploads.LimitedUploadHandler"]
# Remote pools: timeouts of the callback request (seconds), and which addresses a
# callback URL may resolve to (public ones always; loopback/private only if allowed).
COUPON_CALLBACK_CONNECT_TIMEOUT = env.float("COUPON_CALLBACK_CONNECT_TIMEOUT", default=2.0)
COUPON_CALLBACK_READ_TIMEOUT = env.float("COUPON_CALLBACK_READ_TIMEOUT", default=5.0)
COUPON_CALLBACK_ALLOW_LOOPBACK = env.bool("COUPON_CALLBACK_ALLOW_LOOPBACK", default=DEBUG)
COUPON_CALLBACK_ALLOW_PRIVATE = env.bool("COUPON_CALLBACK_ALLOW_PRIVATE", default=False)
# couponsite/outbound.py: calls to one target at once, and the circuit breaker.
COUPON_CALLBACK_MAX_CONCURRENT = env.int("COUPON_CALLBACK_MAX_CONCURRENT", default=4)
COUPON_CALLBACK_BREAKER_FAILURES = env.int("COUPON_CALLBACK_BREAKER_FAILURES", default=5)
COUPON_CALLBACK_BREAKER_SECONDS = env.int("COUPON_CALLBACK_BREAKER_SECONDS", default=30)

# Idempotency-Key (api.idempotency): answers are kept API_IDEMPOTENCY_HOURS; a request
# waits at the most API_IDEMPOTENCY_WAIT_SECONDS for one with the same key, then is a 409.
API_IDEMPOTENCY_HOURS = 24
API_IDEMPOTENCY_WAIT_SECONDS = env.float("API_IDEMPOTENCY_WAIT_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["purge-idempotency-records"] = {
    "task": "api.tasks.purge_idempotency_records", "schedule": 3600.0, "options": {"expires": 3600.0},
}
