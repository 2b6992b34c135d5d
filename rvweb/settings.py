"""rvweb settings: one module, every value from the environment (see README.md, "Configuration")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url

from rvweb import embedded_redis
from rvweb.env import apart, env_bool, env_int, env_list, env_path, env_paths, env_str, env_url, secret_in_file


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = env_path("RVWEB_DATA_DIR", BASE_DIR / "var")
# The data dir holds the database, the secrets and the Redis socket: only this user may enter it
# (0700, even when it already existed). The SQLite files are made 0600 as they are opened
# (rvweb.apps); no process-wide umask, which would also change the modes of farm files.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
DATA_DIR.chmod(0o700)
DEBUG = env_bool("RVWEB_DEBUG", False)
SECRET_KEY = secret_in_file("SECRET_KEY", DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Where workers may read (uploads) and write (downloads) local files; a manifest naming a file
# anywhere else is refused at import.
ALLOWED_LOCAL_ROOTS = env_paths("RVWEB_ALLOWED_LOCAL_ROOTS", [DATA_DIR / "assets"])
# The local farm keeps one folder per account (input/, output/, config/) under this root.
FARM_ROOT = env_path("RVWEB_FARM_ROOT", DATA_DIR / "farm")
apart(FARM_ROOT, ALLOWED_LOCAL_ROOTS)
# The vendor's rayvision_transmitter: an explicit path wins over the one `install_transmitter` put in
# DATA_DIR/transmitter/, which wins over one on PATH (transfers.transmitter_install.transmitter_path).
# The hosts a Fox Renderfarm / Renderbus account may name as its domain ("*": any): the server signs and
# sends requests there, so a lead cannot point it at an internal host.
FOX_DOMAINS = env_list("RVWEB_FOX_DOMAINS", ["task.foxrenderfarm.com", "jop.foxrenderfarm.com", "task.renderbus.com"])
TRANSMITTER_PATH = env_str("RVWEB_TRANSMITTER", "")
# Variables of the worker's environment the transmitter also gets (it gets no other: not the database
# URL, not the keys), e.g. RAYVISION_LOG_INI for its log settings, or a proxy's.
TRANSMITTER_PASS_ENV = env_list("RVWEB_TRANSMITTER_PASS_ENV", [])
# Files per transmitter run of an upload: each is held open while the run lasts (so what it reads is what
# rvweb checked); also bounded by a quarter of the process's descriptor limit.
TRANSMITTER_BATCH = env_int("RVWEB_TRANSMITTER_BATCH", 5_000, minimum=1, maximum=100_000)
# Seconds a transmitter may print nothing (it prints each file's progress) before it is taken as hung:
# stopped, and the files left tried again.
TRANSMITTER_SILENCE = env_int("RVWEB_TRANSMITTER_SILENCE", 900, minimum=5, maximum=86_400)
# The bearer token a Prometheus server scrapes GET /metrics with; unset: the endpoint answers 404.
METRICS_TOKEN = env_str("RVWEB_METRICS_TOKEN", "")
# MultiFernet keys, newest first: prepend a new key to rotate, keep the old ones until re-encrypted.
CREDENTIAL_KEYS = env_list(
    "RVWEB_CREDENTIAL_KEYS",
    [secret_in_file("RVWEB_CREDENTIAL_KEY", DATA_DIR / "credential_key", generate=_fernet_key)],
)


INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "django_filters",
    "channels",
    "axes",
    "rvweb.apps.RvwebConfig",
    "transfers",
]

MIDDLEWARE = [
    "rvweb.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rvweb.middleware.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it turns a lockout into the lockout page
]

ROOT_URLCONF = "rvweb.urls"
ASGI_APPLICATION = "rvweb.asgi.application"

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
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------------
DATABASE_URL: str = (
    env_url(
        "DATABASE_URL",
        f"sqlite:///{DATA_DIR / 'rvweb.sqlite3'}",
        schemes=("sqlite", "postgres", "postgresql", "pgsql"),
    )
    or ""
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("RVWEB_DB_CONN_MAX_AGE", 0, minimum=0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock up front so
    # concurrent writers wait (timeout) instead of failing with "database is locked" mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests run a worker and a web server in other processes: the test database must be a file.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-rvweb.sqlite3")}
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, broker, channel layer ---------------------------------------------------------------
_redis_url = env_url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
EMBEDDED_REDIS = _redis_url is None
REDIS_URL = _redis_url or embedded_redis.redis_url(DATA_DIR)
BROKER_URL = env_url(
    "BROKER_URL",
    None,
    schemes=("redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp"),
) or (embedded_redis.broker_url(DATA_DIR) if EMBEDDED_REDIS else REDIS_URL)

# Prefix of every key rvweb keeps in Redis (channel layer groups, job leases).
KEY_PREFIX = env_str("RVWEB_CHANNEL_PREFIX", "rvweb")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": KEY_PREFIX},
    },
    # The dashboards' groups (transfers.progress.DASHBOARD_LAYER): Redis pub/sub, so a message reaches
    # each daphne process once and is fanned out to its hundreds of screens in memory, instead of one
    # Redis queue entry (and round trip) per screen. At most once, as all progress publishing is.
    "dashboard": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{KEY_PREFIX}-dash"},
    },
}

CELERY_BROKER_URL = BROKER_URL
CELERY_TASK_DEFAULT_QUEUE = env_str("RVWEB_QUEUE", "rvweb")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # the job table is the source of truth, not a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that goes away (a restarted Redis or RabbitMQ) is waited for, however long it takes:
# the worker reconnects instead of exiting, and a running upload carries on meanwhile (its lease,
# not the broker connection, decides whether it may go on).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing while the broker is away fails after a few seconds instead of hanging a request.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# Redis redelivers an unacknowledged message after this long; uploads can run for hours.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 12 * 3600}
if BROKER_URL.startswith(("redis", "rediss")):
    # Notice a dead or hung Redis within seconds, not at the kernel's TCP timeout.
    CELERY_BROKER_TRANSPORT_OPTIONS |= {"health_check_interval": 10, "socket_timeout": 30, "socket_connect_timeout": 5}
# Every worker re-enqueues interrupted jobs this often (see transfers/tasks.py, "Recovery").
RECOVER_EVERY = env_int("RVWEB_RECOVER_EVERY", 30, minimum=1, maximum=3600)

# --- auth, sessions, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"

# Notifications (transfers.notifications): mail through Django's backend (the console unless set), webhooks
# signed with HMAC-SHA256; a failed delivery is tried again after NOTIFY_BACKOFF_SECONDS, doubling, NOTIFY_TRIES in all.
EMAIL_BACKEND = env_str("RVWEB_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("RVWEB_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("RVWEB_EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("RVWEB_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("RVWEB_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("RVWEB_EMAIL_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("RVWEB_EMAIL_FROM", "rvweb@localhost")
NOTIFY_BACKOFF_SECONDS = env_int("RVWEB_NOTIFY_BACKOFF_SECONDS", 10, minimum=1, maximum=3600)
NOTIFY_TRIES = env_int("RVWEB_NOTIFY_TRIES", 5, minimum=1, maximum=20)
WEBHOOK_TIMEOUT_SECONDS = 5
LOGIN_REDIRECT_URL = "manifest-list"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("RVWEB_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if SESSION_COOKIE_SECURE:
    # Served over HTTPS by a proxy that terminates TLS: it redirects plain HTTP itself and tells us
    # the scheme; browsers are told to use HTTPS only from now on.
    SECURE_HSTS_SECONDS = env_int("RVWEB_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("RVWEB_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = False
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Login throttling (django-axes), for the login form, the admin and the API's Basic auth alike: after
# RVWEB_LOGIN_FAILURE_LIMIT failures for one username, or from one address, further attempts are
# refused (429, even with the right password) for RVWEB_LOGIN_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("RVWEB_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("RVWEB_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one over the limit locks out
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_LOCKOUT_CALLABLE = "rvweb.lockout.lockout_response"  # that page; a JSON error under /api/
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["password"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve straight from static/: no collectstatic step on a fresh machine

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First: its WWW-Authenticate header makes a request without credentials a 401 (session auth has none).
        "transfers.api.auth.ApiTokenAuthentication",  # scripts: "Authorization: Token <key>" (keys on /tokens/)
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "transfers.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "transfers.api.errors.exception_handler",  # one error shape, see there
    "DEFAULT_PAGINATION_CLASS": "transfers.api.pagination.Pages",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}

# The OpenAPI schema (/api/schema/) and its Swagger UI (/api/docs/), both for logged-in users and tokens.
SPECTACULAR_SETTINGS = {
    "TITLE": "rvweb API",
    "DESCRIPTION": "Farm accounts, manifests and transfer jobs of your teams. Authenticate with 'Authorization: Token <key>'.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "transfers.api.schema.kind_options_hook"],
    "ENUM_NAME_OVERRIDES": {"NotificationEventEnum": "transfers.models.NotificationSettings.Event"},
}

# Progress messages per second per job on the channel layer (latest wins in between).
PROGRESS_MAX_PER_SECOND = env_int("RVWEB_PROGRESS_MAX_PER_SECOND", 4, minimum=1, maximum=50)
# The same for the dashboards (per job, to its team's group and the staff's): every viewer gets each one.
DASHBOARD_MAX_PER_SECOND = env_int("RVWEB_DASHBOARD_MAX_PER_SECOND", 4, minimum=1, maximum=50)

# Error pages (RVWEB_DEBUG=1) hide settings whose names match this, on top of Django's own list:
# the URLs here carry passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "rvweb.debug.SafeReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("RVWEB_LOG_LEVEL", "INFO")},
}
