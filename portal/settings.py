"""Settings for the OneProtect Integrations portal: every value comes from the environment."""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

# Development defaults exist only with DEBUG on (make run); production must set real values
# (`manage.py generate_keys` prints both keys). A missing or refused value does not stop the
# import, so that `generate_keys` runs before any key exists: our system checks
# (portal/checks.py) name it and stop migrate, qcluster, runserver and the web processes.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
# A fixed Fernet key for development only (make run, tests). Refused when DEBUG is off.
DEV_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE="

SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY if DEBUG else "")
# Previous keys that still verify sessions and signed values while a new SECRET_KEY takes over.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# Secrets at rest (signing secrets, custom header values): Fernet keys, the first encrypts.
FIELD_ENCRYPTION_KEYS = env.list(
    "FIELD_ENCRYPTION_KEYS", default=[DEV_FIELD_ENCRYPTION_KEY] if DEBUG else []
)

# The audit chain's HMAC key: from the environment only, never stored in the database, so that
# someone who can write the database cannot recompute the chain after rewriting it.
# Missing or the development one with DEBUG off: the start-up checks refuse (portal/checks.py).
DEV_AUDIT_CHAIN_KEY = "dev-only-audit-chain-key-do-not-use-in-production"
AUDIT_CHAIN_KEY = env.str("AUDIT_CHAIN_KEY", default=DEV_AUDIT_CHAIN_KEY if DEBUG else "")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # WhiteNoise serves static files under runserver too, as it does in production.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",
    "csp",
    "portal",
    "integrations",  # before django_q: its `qcluster` command wraps django-q2's
    "django_q",
    "ninja",
    "audit",
    "devtools",  # the demo receiver and event simulator (make run)
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "portal.middleware.TenantMiddleware",
    "portal.scoping.TenantScopeMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy on every response (django-csp): scripts only from our own static
# files, never inline; nothing from other origins. Inline style attributes stay allowed (a
# progress bar's width, Django's admin).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
            ],
        },
    },
]

# The database. `make run` and `make test` start an embedded PostgreSQL and set DATABASE_URL.
# Unset, Django gets no database and the system check portal.E006 says what to set.
DATABASES = {"default": env.db("DATABASE_URL") if "DATABASE_URL" in env else {}}
# A unix-socket directory may be given percent-encoded as the host (postgres://u@%2Frun%2Fpg/db).
DATABASES["default"]["HOST"] = unquote(DATABASES["default"].get("HOST") or "")
# django-q2's ORM broker closes old connections on every enqueue: keep them (NOTES.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "portal.User"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (django-axes): lock a user name from an address after repeated failures.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_FORM_FIELD = "username"  # the sign-in form field that holds the email
AXES_VERBOSE = False
# Reverse proxies in front (each appends to X-Forwarded-For): the client address for throttling
# and audit entries comes from portal.clientip (django-ipware), never from a client's header.
PROXY_COUNT = env.int("PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "portal.clientip.client_ip"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: `manage.py collectstatic` writes them, compressed and with content-hashed
# names, to STATIC_ROOT; WhiteNoise serves them from the web processes under /static/ with
# far-future caching (so gunicorn alone serves a styled portal and admin).
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Security hardening: on by default, relaxed only in development.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# A load balancer's plain-HTTP health probe must not be redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading commits the whole domain to HTTPS for browsers' lifetimes: the operator's choice,
# so `check --deploy` does not warn while it is off.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "portal.logging.JsonFormatter"}},
    "filters": {
        "request_id": {"()": "portal.logging.RequestIdFilter"},
        "client_error": {"()": "portal.logging.ClientErrorFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        },
        "client_errors": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "client_error"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our own request line replaces Django's, which would log query strings.
        "django.server": {"handlers": [], "propagate": False},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # A bad Host header and other refused requests: the client's mistake, not ours.
        "django.security": {"handlers": ["client_errors"], "propagate": False},
        # django-q2 logs every task at INFO; its warnings and errors are what matter.
        "django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")},
    },
}

DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="demo-password-1")

# The django-q2 worker cluster. The ORM broker by default; Redis when REDIS_URL is set.
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="oneprotect"),
    "workers": env.int("Q_WORKERS", default=4),
    # Tasks other than the delivery loops; a loop sets its own timeout (see below), and
    # "retry" (when the ORM broker hands out an unacknowledged task again) exceeds both.
    "timeout": 120,
    "retry": 420,
    "max_attempts": 1,
    "queue_limit": 200,
    "bulk": 10,
    "poll": 0.1,
    "catch_up": False,
    "save_limit": -1,  # successful tasks are not stored; delivery state lives in our tables
    "ack_failures": True,
    "label": "Worker cluster",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL

else:
    Q_CLUSTER["orm"] = "default"

# Rate limit counters (portal/ratelimits.py) live in the cache: Redis, shared by every process,
# when REDIS_URL is set; otherwise each process counts for itself.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
RATE_LIMITS = {
    "publish": env.str("RATE_LIMIT_PUBLISH", default="600/m"),
    "test_send": env.str("RATE_LIMIT_TEST_SEND", default="10/m"),
    "signature_check": env.str("RATE_LIMIT_SIGNATURE_CHECK", default="30/m"),
}


def _duration_seconds(value: str) -> int:
    """'5d', '12h', '30m', '90s' or plain seconds."""
    value = value.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


# Webhook delivery (docs/design.md#delivery, #security).
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)
WEBHOOK_MAX_DESTINATIONS_PER_TENANT = env.int("WEBHOOK_MAX_DESTINATIONS_PER_TENANT", default=50)
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
WEBHOOK_ALLOWED_PRIVATE_TARGETS = env.list("WEBHOOK_ALLOWED_PRIVATE_TARGETS", default=[])
# Start-up checks to acknowledge (e.g. portal.E011,portal.E012 for a local benchmark stack).
SILENCED_SYSTEM_CHECKS = [
    *SILENCED_SYSTEM_CHECKS,
    *env.list("SILENCED_SYSTEM_CHECKS", default=[]),
]
WEBHOOK_EGRESS_IPS = env.list("WEBHOOK_EGRESS_IPS", default=[])
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
# Delay before attempt 2, 3, ... in seconds (the last value repeats); about a day in all.
WEBHOOK_RETRY_SCHEDULE = [
    int(x)
    for x in env.list(
        "WEBHOOK_RETRY_SCHEDULE",
        default=["30", "120", "600", "1800", "3600", "7200", "14400", "21600", "43200"],
    )
]
WEBHOOK_RETRY_JITTER = env.float("WEBHOOK_RETRY_JITTER", default=0.2)
WEBHOOK_RETRY_AFTER_CAP = env.int("WEBHOOK_RETRY_AFTER_CAP", default=3600)
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=100)
WEBHOOK_BATCH_MAX_BYTES = env.int("WEBHOOK_BATCH_MAX_BYTES", default=1024 * 1024)
WEBHOOK_MAX_EVENT_BYTES = env.int("WEBHOOK_MAX_EVENT_BYTES", default=256 * 1024)
# Publishing in batches (POST /api/v1/events with {"events": [...]}, manage.py publish_event).
EVENTS_BATCH_MAX_COUNT = env.int("EVENTS_BATCH_MAX_COUNT", default=1000)
EVENTS_BATCH_MAX_BYTES = env.int("EVENTS_BATCH_MAX_BYTES", default=5 * 1024 * 1024)
# Django refuses larger request bodies (413) before any view runs: let a full batch through
# (never lower than Django's own 2.5 MB default); the API refuses bodies over the batch limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, EVENTS_BATCH_MAX_BYTES)
WEBHOOK_DISABLE_AFTER = _duration_seconds(env.str("WEBHOOK_DISABLE_AFTER", default="5d"))
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=30)
WEBHOOK_SECRET_OVERLAP_HOURS = env.int("WEBHOOK_SECRET_OVERLAP_HOURS", default=24)
WEBHOOK_LEASE_MARGIN = env.int("WEBHOOK_LEASE_MARGIN", default=15)
# A destination's timeout is 1 to WEBHOOK_TIMEOUT_MAX seconds; each attempt ends within it + 1.
WEBHOOK_TIMEOUT_MAX = 300
# The delivery loops: asyncio loops running as long django-q2 tasks, each with many sends in
# flight. By default one per CPU core, leaving at least one of the cluster's workers for the
# remaining tasks (test sends, resends, retention). A busy loop takes about one core (its event
# loop and its database thread share the GIL): more loops than cores only compete for them
# (measured: 2 loops drain fast receivers 35% faster than 3 on 2 cores).
WEBHOOK_DELIVERY_LOOPS = env.int(
    "WEBHOOK_DELIVERY_LOOPS",
    default=max(1, min(Q_CLUSTER["workers"] - 1, os.cpu_count() or 1)),
)
WEBHOOK_MAX_IN_FLIGHT = env.int("WEBHOOK_MAX_IN_FLIGHT", default=300)  # sends per loop
# Events one claim (or one record's continued streams) may take at most: with large batches a
# loop fills its places a few streams at a time, so the texts a claim holds before its bodies
# are built stay bounded (worker memory does not grow with the batch size beyond the bodies).
WEBHOOK_CLAIM_MAX_EVENTS = env.int("WEBHOOK_CLAIM_MAX_EVENTS", default=2000)
WEBHOOK_TENANT_MAX_IN_FLIGHT = env.int("WEBHOOK_TENANT_MAX_IN_FLIGHT", default=100)
WEBHOOK_LOOP_SLICE = env.float("WEBHOOK_LOOP_SLICE", default=30.0)  # then a fresh task
WEBHOOK_POLL_INTERVAL = env.float("WEBHOOK_POLL_INTERVAL", default=1.0)  # safety net
# A loop task's limit: its slice, then the longest attempt it may still wait for, plus room.
WEBHOOK_LOOP_TASK_TIMEOUT = int(WEBHOOK_LOOP_SLICE + WEBHOOK_TIMEOUT_MAX + 1 + 30)
if Q_CLUSTER["retry"] <= WEBHOOK_LOOP_TASK_TIMEOUT:
    Q_CLUSTER["retry"] = WEBHOOK_LOOP_TASK_TIMEOUT + 30
# Auto-disable needs this many failed attempts in a row as well as WEBHOOK_DISABLE_AFTER.
WEBHOOK_DISABLE_MIN_FAILURES = env.int("WEBHOOK_DISABLE_MIN_FAILURES", default=5)
# /metrics: staff, or `Authorization: Bearer <METRICS_TOKEN>` when set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
WEBHOOK_TEST_TIMEOUT = env.int("WEBHOOK_TEST_TIMEOUT", default=10)
WEBHOOK_USER_AGENT = "OneProtect-Webhooks/1.0 (+https://oneprotect.example/docs/webhooks)"
# Tests that drive the engine by hand turn off queueing of wake-up tasks.
WEBHOOK_ENQUEUE = env.bool("WEBHOOK_ENQUEUE", default=True)
