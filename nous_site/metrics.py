"""Prometheus metrics at `/metrics`, correct with several processes.

With `PROMETHEUS_MULTIPROC_DIR` set (production: every ASGI process and Celery worker of a
machine points at the same empty directory, cleared at deploy), each process writes its numbers
to files there and a scrape adds them up; without it, the numbers are this process's. The
endpoint is open while `DEBUG` is on; otherwise it needs `Authorization: Bearer
$NOUS_METRICS_TOKEN` or a client address in `NOUS_METRICS_ALLOW` (comma-separated networks).
"""

from __future__ import annotations

import ipaddress
import logging
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

log = logging.getLogger("nous.metrics")

RUNS = Counter("nous_runs_total", "Agent runs that ended, by status", ["status"])
RUN_ERRORS = Counter("nous_run_errors_total", "Runs that failed, by provider and error code", ["provider", "code"])
DELTAS = Counter("nous_deltas_published_total", "run.delta frames published (each reaches every socket watching)")
SOCKETS = Gauge("nous_open_sockets", "Open websockets", multiprocess_mode="livesum")
QUEUED = Gauge("nous_runs_queued", "Runs waiting in the fair queue for a slot, at scrape time",
               multiprocess_mode="mostrecent")  # read from the shared store: a stale value of another process must not win
ACTIVE = Gauge("nous_runs_active", "Runs holding a slot of the fair queue (NOUS_MAX_ACTIVE_RUNS at most), at scrape time",
               multiprocess_mode="mostrecent")
FIRST_TOKEN = Histogram("nous_time_to_first_token_seconds", "A worker's claim to the first delta published, by provider",
                        ["provider"],
                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RUN_SECONDS = Histogram("nous_run_duration_seconds", "Claim to end of a run, by provider", ["provider"],
                        buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
# Read from the shared store at scrape time by the process that serves the scrape: the most recent
# value is the deployment's (with "max" a process that once saw it open would keep saying so).
BREAKER_OPEN = Gauge("nous_breaker_open", "1 while a provider's circuit breaker refuses calls (open or half-open)",
                     ["provider"], multiprocess_mode="mostrecent")
BREAKER_FAILURES = Gauge("nous_breaker_failures", "A provider's consecutive failures, as its breaker counts them",
                         ["provider"], multiprocess_mode="mostrecent")


def provider_of(model: str) -> str:
    return model.split(":", 1)[0] if ":" in model else "unknown"


def _allowed(request: HttpRequest) -> bool:
    token = settings.NOUS_METRICS_TOKEN
    if token and request.headers.get("Authorization", "") == f"Bearer {token}":
        return True
    address = request.META.get("REMOTE_ADDR", "")
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    if any(client in ipaddress.ip_network(net, strict=False) for net in settings.NOUS_METRICS_ALLOW):
        return True
    return settings.DEBUG and not token


def _sample_state() -> None:
    """Gauges read at scrape time: the fair queue and the breakers (shared by all processes in production)."""
    from redis import RedisError

    from chat.runs.breaker_store import breaker_states_now
    from chat.runs.slots import slots

    try:
        QUEUED.set(len(slots().waiting_now()))
        ACTIVE.set(slots().holders_now())
    except Exception:  # Redis trouble: the rest of the numbers are still worth a scrape; /readyz tells
        log.warning("metrics: the fair queue could not be read", exc_info=True)
    try:
        states = breaker_states_now()
    except RedisError:
        log.warning("metrics: the breakers could not be read", exc_info=True)
        return
    for one in states:
        BREAKER_OPEN.labels(one["name"]).set(0 if one["state"] == "closed" else 1)
        BREAKER_FAILURES.labels(one["name"]).set(one["failures"])


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponseNotFound()  # as if it were not there
    _sample_state()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
