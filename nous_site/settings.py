"""Nous Chat settings: one file, every knob from the environment, defaults that work on a laptop.

`REDIS_URL` unset gives the embedded default (SQLite, in-memory channel layer, runs in-process);
set, it gives the production mode (channels_redis, Celery on Redis). `DATABASE_URL` picks the
database independently.
"""

import os
import secrets
import warnings
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str = "False") -> bool:
    return os.getenv(name, default).lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def envfloat(name: str, default: float) -> float:
    return float(os.getenv(name, str(default)))


def dev_secret_key(path: Path) -> str:
    """Read the checkout's development key, creating it once (atomically, several processes may race)."""
    path.parent.mkdir(exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        key = "dev-only-" + secrets.token_urlsafe(32)
        f.write(key)
    return key


DEBUG = envbool("DEBUG", "True")
SECRET_KEY = os.getenv("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
    # One key for every process of this checkout (ASGI processes, workers, tests), kept in var/:
    # a key per process would log users out whenever a request hit another process.
    SECRET_KEY = os.getenv("NOUS_DEV_SECRET_KEY") or dev_secret_key(BASE_DIR / "var" / "dev-secret-key")

ALLOWED_HOSTS = [h.strip() for h in os.getenv("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o for o in os.getenv("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
    "rooms",
    "contact",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "nous_site.urls"
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
WSGI_APPLICATION = None
ASGI_APPLICATION = "nous_site.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Persistent connections: runs touch the database every second; a connection per query
        # (the 0 default) made PostgreSQL fork a backend each time and cost most of its CPU.
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        # Off by default: with Channels every database call from async code would first spend a
        # `SELECT 1` round trip on it. A connection broken by a database restart fails one query,
        # which the caller reports, and is then replaced (close_old_connections).
        conn_health_checks=envbool("DB_CONN_HEALTH_CHECKS", "False"),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL and a busy timeout let the in-process runs write while pages read.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    # A file, not memory, so a server process started by a test (the browser test) shares it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}
    (BASE_DIR / "var").mkdir(exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/chat/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every start without it
WHITENOISE_USE_FINDERS = True

# --- Redis: channel layer, Celery broker, replay logs, stop signals -------------------------
REDIS_URL = os.getenv("REDIS_URL", "")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer: one round trip per send, ~4x the core layer's throughput
            # (see DESIGN.md). It is at-most-once; the replay log is the ledger.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                # redis-py 8 changed these defaults in ways that break channels_redis. The same
                # server is listed NOUS_LAYER_CONNECTIONS times: the layer sends one message at a
                # time per entry (a lock around each PUBLISH round trip), which capped a worker at
                # about a thousand deltas a second; groups are spread over the entries by hash.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 10000}]
                * envint("NOUS_LAYER_CONNECTIONS", 8),
            },
        }
    }
else:
    # A process's conversation hub (chat/fanout.py) takes every frame of its conversations: its
    # channel must not be capped at the default 100 waiting messages. (`channel_capacity` does not
    # work with this layer in Channels 4.3, and the hub's is the only channel in use.)
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 100_000}}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Early acknowledgement (Celery's default), on purpose: a run whose worker dies is never
# delivered again, because re-running would bill the provider twice and show two answers.
# The watchdog (cleanup_agents) ends such a run `failed` and the user may retry it.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = os.getenv("NOUS_CELERY_QUEUE", "nous-runs")

# --- Nous Chat ---------------------------------------------------------------------------
NOUS_DEFAULT_MODEL = os.getenv("NOUS_DEFAULT_MODEL", "test:")
# Providers a user may pick in the settings panel; local servers (ollama, vllm, ...) are opt-in,
# since they make this server call ports on its own network.
NOUS_ALLOWED_PROVIDERS = os.getenv("NOUS_ALLOWED_PROVIDERS", "anthropic,openai,test").split(",")
NOUS_MAX_MESSAGE_CHARS = envint("NOUS_MAX_MESSAGE_CHARS", 8000)
NOUS_MAX_FRAME_BYTES = envint("NOUS_MAX_FRAME_BYTES", 64 * 1024)
NOUS_HISTORY_PAGE_SIZE = envint("NOUS_HISTORY_PAGE_SIZE", 50)
NOUS_CONTEXT_MESSAGES = envint("NOUS_CONTEXT_MESSAGES", 40)
NOUS_MAX_SOCKETS_PER_USER = envint("NOUS_MAX_SOCKETS_PER_USER", 20)
NOUS_SENDS_PER_MINUTE = envint("NOUS_SENDS_PER_MINUTE", 30)
NOUS_FRAMES_PER_SECOND = envint("NOUS_FRAMES_PER_SECOND", 20)
# A socket's presence in a room and its slot in the per-user cap expire this long after its
# process stopped renewing them (renewed every third of it): a killed process leaves no ghosts.
NOUS_PRESENCE_TTL_SECS = envfloat("NOUS_PRESENCE_TTL_SECS", 30.0)
NOUS_COALESCE_CHARS = envint("NOUS_COALESCE_CHARS", 50)
NOUS_COALESCE_MS = envint("NOUS_COALESCE_MS", 100)
# Past this many runs streaming in one process the window widens in proportion (at most 4x):
# deltas/s then stop growing with the number of streams (see docs/scaling.md).
NOUS_COALESCE_WIDEN_AT = envint("NOUS_COALESCE_WIDEN_AT", 250)
NOUS_COALESCE_MAX_WIDEN = envfloat("NOUS_COALESCE_MAX_WIDEN", 4.0)
NOUS_CHECKPOINT_SECS = envfloat("NOUS_CHECKPOINT_SECS", 1.0)  # heartbeat of a process's runs
# The partial text in the database; the replay log holds it exactly, this is for a lost Redis.
NOUS_CHECKPOINT_TEXT_SECS = envfloat("NOUS_CHECKPOINT_TEXT_SECS", 3.0)
# A running run whose heartbeat is older than this is ended `failed` by the watchdog.
NOUS_RUN_STALE_SECS = envfloat("NOUS_RUN_STALE_SECS", 30.0)
# A queued run nobody picked up within this is ended `failed` too.
NOUS_RUN_QUEUED_TIMEOUT_SECS = envfloat("NOUS_RUN_QUEUED_TIMEOUT_SECS", 300.0)
NOUS_WATCHDOG_INTERVAL_SECS = envfloat("NOUS_WATCHDOG_INTERVAL_SECS", 15.0)
NOUS_REPLAY_TTL_SECS = envint("NOUS_REPLAY_TTL_SECS", 600)
# Threads (and so database connections) per process for database calls from async code (chat/db.py).
NOUS_DB_THREADS = envint("NOUS_DB_THREADS", 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 8)
# Interpreter tuning of the server processes (nous_site/runtime.py).
NOUS_GIL_SWITCH_SECS = envfloat("NOUS_GIL_SWITCH_SECS", 0.0005)
NOUS_GC_THRESHOLDS = tuple(int(n) for n in os.getenv("NOUS_GC_THRESHOLDS", "50000,20,20").split(","))
NOUS_DEMO_USER = os.getenv("NOUS_DEMO_USER", "demo")
# The contact form's suggestions: chat's model unless told otherwise; past the timeout, none.
NOUS_FORM_MODEL = os.getenv("NOUS_FORM_MODEL", NOUS_DEFAULT_MODEL)
NOUS_FORM_TIMEOUT_SECS = envfloat("NOUS_FORM_TIMEOUT_SECS", 8.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "WARNING")},
    "loggers": {
        "nous": {"level": os.getenv("NOUS_LOG_LEVEL", "INFO"), "handlers": ["console"], "propagate": False},
    },
}

# WhiteNoise serves static files as sync iterators; under ASGI Django warns on each. They are small.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
