"""Nous Chat settings: one file, every knob from the environment, defaults that work on a laptop.

`REDIS_URL` unset gives the embedded default (SQLite, in-memory channel layer, runs in-process);
set, it gives the production mode (channels_redis, Celery on Redis). `DATABASE_URL` picks the
database independently.
"""

import ipaddress
import math
import os
import secrets
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from nous_site.redis_urls import broker_url

BASE_DIR = Path(__file__).resolve().parent.parent


# Each helper refuses a value it cannot read: start-up stops with ImproperlyConfigured naming the
# variable and the value, rather than a default quietly standing in for a typo. An empty value is
# the same as an unset one (`DEBUG=` in a compose file).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _bad(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not valid: expected {expected}")


def envbool(name: str, default: bool) -> bool:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise _bad(name, value, "one of " + "/".join(TRUE_WORDS + FALSE_WORDS))


def envint(name: str, default: int, min: int | None = None) -> int:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad(name, value, "an integer") from None
    if min is not None and number < min:
        raise _bad(name, value, f"an integer of at least {min}")
    return number


def envfloat(name: str, default: float, min: float | None = None, above: float | None = None) -> float:
    """`min` is inclusive, `above` exclusive (a duration that must not be zero)."""
    value = os.getenv(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _bad(name, value, "a number") from None
    if not math.isfinite(number):
        raise _bad(name, value, "a finite number")
    if min is not None and number < min:
        raise _bad(name, value, f"a number of at least {min:g}")
    if above is not None and number <= above:
        raise _bad(name, value, f"a number greater than {above:g}")
    return number


def envsecret(name: str, default: str = "") -> str:
    """NAME, or the content of the file NAME_FILE names (Docker and Kubernetes secrets), not both."""
    value, path = os.getenv(name, ""), os.getenv(f"{name}_FILE", "")
    if value and path:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set: set one of them")
    if not path:
        return value or default
    try:
        secret = Path(path).read_text().rstrip("\r\n")
    except OSError as e:
        raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {e.strerror or e}") from None
    if not secret:
        raise ImproperlyConfigured(f"{name}_FILE={path!r} is empty")
    return secret


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def envlevel(name: str, default: str) -> str:
    value = os.getenv(name, "").strip().upper() or default
    if value not in LOG_LEVELS:
        raise _bad(name, os.getenv(name, ""), "one of " + "/".join(LOG_LEVELS))
    return value


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


DEBUG = envbool("DEBUG", True)
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off")
    # One key for every process of this checkout (ASGI processes, workers, tests), kept in var/:
    # a key per process would log users out whenever a request hit another process.
    SECRET_KEY = os.getenv("NOUS_DEV_SECRET_KEY") or dev_secret_key(BASE_DIR / "var" / "dev-secret-key")

# The laptop's hosts only while DEBUG is on: a production server names its own (check nous.E002).
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

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

# Lower case: not a setting, so Django's error page never shows the password in it.
_database_url = envsecret("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url,
            # Persistent connections: runs touch the database every second; a connection per query
            # (the 0 default) made PostgreSQL fork a backend each time and cost most of its CPU.
            conn_max_age=envint("DB_CONN_MAX_AGE", 60, min=0),
            # Off by default: with Channels every database call from async code would first spend a
            # `SELECT 1` round trip on it. A connection broken by a database restart fails one query,
            # which the caller reports, and is then replaced (close_old_connections).
            conn_health_checks=envbool("DB_CONN_HEALTH_CHECKS", False),
        )
    }
except ValueError as e:  # the message, not the URL: that holds the password
    raise ImproperlyConfigured(f"DATABASE_URL is not valid: {e}") from None
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

# The provider SDKs read their keys from the environment (agents/ knows nothing of Django): a key
# given as a file is put there, and the _FILE variable dropped so child processes see one of them.
for _name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
    if os.getenv(f"{_name}_FILE"):
        os.environ[_name] = envsecret(_name)
        del os.environ[f"{_name}_FILE"]

# --- Redis: channel layer, Celery broker, replay logs, stop signals -------------------------
REDIS_URL = envsecret("REDIS_URL")
if REDIS_URL and REDIS_URL.partition("://")[0] not in ("redis", "rediss", "unix"):
    raise ImproperlyConfigured(f"REDIS_URL has an unknown scheme {REDIS_URL.partition('://')[0]!r}: expected redis://, rediss:// or unix://")

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
                * envint("NOUS_LAYER_CONNECTIONS", 8, min=1),
            },
        }
    }
else:
    # A process's conversation hub (chat/fanout.py) takes every frame of its conversations: its
    # channel must not be capped at the default 100 waiting messages. (`channel_capacity` does not
    # work with this layer in Channels 4.3, and the hub's is the only channel in use.)
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 100_000}}}

CELERY_BROKER_URL = broker_url(REDIS_URL) if REDIS_URL else "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Early acknowledgement (Celery's default), on purpose: a run whose worker dies is never
# delivered again, because re-running would bill the provider twice and show two answers.
# The watchdog (cleanup_agents) ends such a run `failed` and the user may retry it.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = os.getenv("NOUS_CELERY_QUEUE", "nous-runs")
# `celery -A nous_site beat` (make beat; one such process per deployment) starts the periodic
# commands; each expires after its interval, so a backlog while the workers are down is not run
# many times over. The ASGI processes also run the watchdog themselves (NOUS_WATCHDOG_INTERVAL_SECS).
NOUS_CLEANUP_EVERY_SECS = envfloat("NOUS_CLEANUP_EVERY_SECS", 60.0, above=0)
NOUS_PRUNE_EVERY_SECS = envfloat("NOUS_PRUNE_EVERY_SECS", 3600.0, above=0)
# Chat conversations with no activity for this many days are deleted (0: kept for ever).
NOUS_PRUNE_AFTER_DAYS = envint("NOUS_PRUNE_AFTER_DAYS", 90, min=0)
CELERY_BEAT_SCHEDULE = {
    "cleanup-agents": {"task": "chat.cleanup_agents", "schedule": NOUS_CLEANUP_EVERY_SECS,
                       "options": {"expires": NOUS_CLEANUP_EVERY_SECS}},
}
if NOUS_PRUNE_AFTER_DAYS:
    CELERY_BEAT_SCHEDULE["prune-conversations"] = {
        "task": "chat.prune_conversations", "schedule": NOUS_PRUNE_EVERY_SECS, "options": {"expires": NOUS_PRUNE_EVERY_SECS},
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")

# --- Nous Chat ---------------------------------------------------------------------------
NOUS_DEFAULT_MODEL = os.getenv("NOUS_DEFAULT_MODEL", "test:")
# Providers a user may pick in the settings panel; local servers (ollama, vllm, ...) are opt-in,
# since they make this server call ports on its own network.
NOUS_ALLOWED_PROVIDERS = envlist("NOUS_ALLOWED_PROVIDERS", "anthropic,openai,test")
NOUS_MAX_MESSAGE_CHARS = envint("NOUS_MAX_MESSAGE_CHARS", 8000, min=1)
NOUS_MAX_FRAME_BYTES = envint("NOUS_MAX_FRAME_BYTES", 64 * 1024, min=1)
NOUS_HISTORY_PAGE_SIZE = envint("NOUS_HISTORY_PAGE_SIZE", 50, min=1)
NOUS_CONTEXT_MESSAGES = envint("NOUS_CONTEXT_MESSAGES", 40, min=1)


def envwindows(name: str) -> dict[str, int]:
    """Context window overrides, `provider:model=tokens,...` (agents.windows); a bad value stops start-up."""
    from agents.errors import AgentConfigError
    from agents.windows import parse_windows

    value = os.getenv(name, "")
    try:
        return parse_windows(value)
    except AgentConfigError as error:
        raise ImproperlyConfigured(f"{name}={value!r} is not valid: {error}") from None


# Per-model context windows in tokens, over agents/windows.py's table; `provider:` sets a provider's default.
NOUS_CONTEXT_WINDOWS = envwindows("NOUS_CONTEXT_WINDOWS")
# A conversation's `fallback_models`: at most this many.
NOUS_MAX_FALLBACK_MODELS = envint("NOUS_MAX_FALLBACK_MODELS", 3, min=0)
NOUS_MAX_SOCKETS_PER_USER = envint("NOUS_MAX_SOCKETS_PER_USER", 20, min=1)
NOUS_SENDS_PER_MINUTE = envint("NOUS_SENDS_PER_MINUTE", 30, min=1)
NOUS_FRAMES_PER_SECOND = envint("NOUS_FRAMES_PER_SECOND", 20, min=1)
# A socket's presence in a room and its slot in the per-user cap expire this long after its
# process stopped renewing them (renewed every third of it): a killed process leaves no ghosts.
NOUS_PRESENCE_TTL_SECS = envfloat("NOUS_PRESENCE_TTL_SECS", 30.0, above=0)
# Tools that wait for a human's approval before they run (names, comma-separated), and how long.
NOUS_APPROVAL_TOOLS = envlist("NOUS_APPROVAL_TOOLS", "")
# The largest conversation export `/chat/import/` reads.
NOUS_IMPORT_MAX_BYTES = envint("NOUS_IMPORT_MAX_BYTES", 5 * 1024 * 1024, min=1)
# Attachments (chat.uploads): stored in the database with their message. Images are sniffed by
# their magic bytes; text must be UTF-8 without NUL and carry one of the extensions below.
NOUS_ATTACHMENT_MAX_IMAGE_BYTES = envint("NOUS_ATTACHMENT_MAX_IMAGE_BYTES", 5 * 1024 * 1024, min=1)
NOUS_ATTACHMENT_MAX_TEXT_BYTES = envint("NOUS_ATTACHMENT_MAX_TEXT_BYTES", 512 * 1024, min=1)
NOUS_ATTACHMENTS_PER_MESSAGE = envint("NOUS_ATTACHMENTS_PER_MESSAGE", 5, min=1)
NOUS_ATTACHMENT_IMAGE_TYPES = envlist("NOUS_ATTACHMENT_IMAGE_TYPES", "image/png,image/jpeg,image/gif,image/webp")
NOUS_ATTACHMENT_TEXT_EXTENSIONS = envlist(
    "NOUS_ATTACHMENT_TEXT_EXTENSIONS",
    "txt,md,markdown,csv,tsv,json,jsonl,xml,yaml,yml,toml,ini,cfg,log,py,js,mjs,ts,tsx,jsx,html,htm,css,scss,"
    "c,h,cpp,hpp,cc,java,kt,go,rs,rb,php,sh,bash,zsh,sql,swift,cs,r,lua,pl,scala,dart,vue,svelte,tex,diff,patch",
)
# Model strings (or `provider:` prefixes) that accept images besides agents.models.capabilities' table.
NOUS_IMAGE_MODELS = envlist("NOUS_IMAGE_MODELS", "")
# A deployment's own tools, by dotted path to a function or an agents.tools.Tool.
NOUS_TOOLS = envlist("NOUS_TOOLS", "")
NOUS_APPROVAL_TIMEOUT_SECS = envfloat("NOUS_APPROVAL_TIMEOUT_SECS", 300.0, above=0)
# /metrics: open with DEBUG on; otherwise a bearer token or a client network from this list.
NOUS_METRICS_TOKEN = envsecret("NOUS_METRICS_TOKEN") or ""
NOUS_METRICS_ALLOW = envlist("NOUS_METRICS_ALLOW", "")
for _network in NOUS_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"NOUS_METRICS_ALLOW: {_network!r} is not a network (e.g. 10.0.0.0/8)") from None
NOUS_COALESCE_CHARS = envint("NOUS_COALESCE_CHARS", 50, min=1)
NOUS_COALESCE_MS = envint("NOUS_COALESCE_MS", 100, min=0)
# Past this many runs streaming in one process the window widens in proportion (at most 4x):
# deltas/s then stop growing with the number of streams (see docs/scaling.md).
NOUS_COALESCE_WIDEN_AT = envint("NOUS_COALESCE_WIDEN_AT", 250, min=1)
NOUS_COALESCE_MAX_WIDEN = envfloat("NOUS_COALESCE_MAX_WIDEN", 4.0, min=1)
NOUS_CHECKPOINT_SECS = envfloat("NOUS_CHECKPOINT_SECS", 1.0, above=0)  # heartbeat of a process's runs
# The partial text in the database; the replay log holds it exactly, this is for a lost Redis.
NOUS_CHECKPOINT_TEXT_SECS = envfloat("NOUS_CHECKPOINT_TEXT_SECS", 3.0, above=0)
# A running run whose heartbeat is older than this is ended `failed` by the watchdog.
NOUS_RUN_STALE_SECS = envfloat("NOUS_RUN_STALE_SECS", 30.0, above=0)
# A queued run nobody picked up within this is ended `failed` too (not one that waits its turn in
# the fair queue, nor one handed over within NOUS_RUN_SLOT_CLAIM_SECS: see chat/runs/slots.py).
NOUS_RUN_QUEUED_TIMEOUT_SECS = envfloat("NOUS_RUN_QUEUED_TIMEOUT_SECS", 300.0, above=0)
# The fair run queue: at most this many runs at once across the deployment, the rest waiting
# (round robin between users) up to NOUS_MAX_QUEUED_RUNS, beyond which a send is `overloaded`.
NOUS_MAX_ACTIVE_RUNS = envint("NOUS_MAX_ACTIVE_RUNS", 100, min=1)
NOUS_MAX_QUEUED_RUNS = envint("NOUS_MAX_QUEUED_RUNS", 1000, min=0)
# A run's slot is a lease its process renews every NOUS_CHECKPOINT_SECS: a killed worker's slot
# comes back after NOUS_RUN_SLOT_TTL_SECS; a run handed over gets NOUS_RUN_SLOT_CLAIM_SECS to be claimed.
NOUS_RUN_SLOT_TTL_SECS = envfloat("NOUS_RUN_SLOT_TTL_SECS", 15.0, above=0)
NOUS_RUN_SLOT_CLAIM_SECS = envfloat("NOUS_RUN_SLOT_CLAIM_SECS", 60.0, above=0)
# Production: admitted runs go to the Celery workers through this Redis list (chat/runs/handover.py),
# and each worker process executes at most NOUS_WORKER_RUNS at once, on its one run loop.
NOUS_RUN_HANDOVER_KEY = os.getenv("NOUS_RUN_HANDOVER_KEY", "nous:runs:handover")
NOUS_WORKER_RUNS = envint("NOUS_WORKER_RUNS", 200, min=1)
NOUS_WATCHDOG_INTERVAL_SECS = envfloat("NOUS_WATCHDOG_INTERVAL_SECS", 15.0, min=0)  # 0: off
NOUS_REPLAY_TTL_SECS = envint("NOUS_REPLAY_TTL_SECS", 600, min=1)
# Threads (and so database connections) per process for database calls from async code (chat/db.py).
NOUS_DB_THREADS = envint("NOUS_DB_THREADS", 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 8, min=1)
# Interpreter tuning of the server processes (nous_site/runtime.py).
NOUS_GIL_SWITCH_SECS = envfloat("NOUS_GIL_SWITCH_SECS", 0.0005, above=0)
_gc = envlist("NOUS_GC_THRESHOLDS", "50000,20,20")
if not 1 <= len(_gc) <= 3 or not all(n.isdigit() for n in _gc):
    raise _bad("NOUS_GC_THRESHOLDS", os.getenv("NOUS_GC_THRESHOLDS", ""), "one to three non-negative integers, e.g. 50000,20,20")
NOUS_GC_THRESHOLDS = tuple(int(n) for n in _gc)
NOUS_DEMO_USER = os.getenv("NOUS_DEMO_USER", "demo")
# The contact form's suggestions: chat's model unless told otherwise; past the timeout, none.
NOUS_FORM_MODEL = os.getenv("NOUS_FORM_MODEL", NOUS_DEFAULT_MODEL)
NOUS_FORM_TIMEOUT_SECS = envfloat("NOUS_FORM_TIMEOUT_SECS", 8.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envlevel("LOG_LEVEL", "WARNING")},
    "loggers": {
        "nous": {"level": envlevel("NOUS_LOG_LEVEL", "INFO"), "handlers": ["console"], "propagate": False},
    },
}

# WhiteNoise serves static files as sync iterators; under ASGI Django warns on each. They are small.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
