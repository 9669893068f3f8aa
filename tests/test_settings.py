"""Settings refuse nonsense: a bad value stops start-up naming the variable; unsafe combinations
are system checks (nous.E001 ...) that `manage.py check --deploy` shows."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from nous_site import checks
from nous_site.settings import envbool, envfloat, envint, envsecret

ROOT = Path(__file__).resolve().parent.parent
SETUP = "import django; django.setup(); from django.conf import settings; print(repr(settings.SECRET_KEY))"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that picks settings, plus `extra`: the embedded default."""
    picks = ("NOUS_", "DJANGO_", "DATABASE_", "REDIS_", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "LOG_LEVEL", "ANTHROPIC_", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(picks)}
    env.update(DJANGO_SETTINGS_MODULE="nous_site.settings", PYTHONPATH=str(ROOT), **extra)
    return env


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=60)


# --- Start-up refuses a bad value, naming it ---------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("DEBUG", "maybe"),
    ("NOUS_SENDS_PER_MINUTE", "abc"),
    ("NOUS_SENDS_PER_MINUTE", "0"),  # a limit of zero sends would lock everyone out
    ("NOUS_RUN_STALE_SECS", "-5"),
])
def test_a_bad_value_stops_start_up_naming_the_variable(name, value):
    r = run(["-c", SETUP], **{name: value})
    assert r.returncode != 0
    # The last line is what an operator reads first: the variable and the value it had.
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured:")
    assert f"{name}={value!r}" in last


def test_good_values_start(tmp_path):
    r = run(["-c", SETUP], DEBUG="Off", SECRET_KEY="k" * 60, ALLOWED_HOSTS="chat.example.com", NOUS_SENDS_PER_MINUTE="5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr("k" * 60)


def test_debug_off_without_a_secret_key_stops_start_up():
    r = run(["-c", SETUP], DEBUG="0")
    assert r.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off" in r.stderr


def test_the_secret_key_comes_from_a_file(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("from-a-file-" + "x" * 50 + "\n")  # as `echo ... > file` writes it
    r = run(["-c", SETUP], DEBUG="0", SECRET_KEY_FILE=str(path), ALLOWED_HOSTS="chat.example.com")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr("from-a-file-" + "x" * 50)


def test_a_secret_given_twice_is_refused(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("one")
    r = run(["-c", SETUP], SECRET_KEY="two", SECRET_KEY_FILE=str(path))
    assert r.returncode != 0
    assert "SECRET_KEY and SECRET_KEY_FILE are both set" in r.stderr


# --- The helpers ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("Yes", True), ("on", True),
    ("0", False), ("false", False), ("False", False), ("NO", False), ("off", False),
])
def test_envbool_reads_the_usual_words(monkeypatch, value, expected):
    monkeypatch.setenv("NOUS_TEST_FLAG", value)
    assert envbool("NOUS_TEST_FLAG", not expected) is expected


def test_envbool_uses_the_default_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("NOUS_TEST_FLAG", raising=False)
    assert envbool("NOUS_TEST_FLAG", True) is True
    monkeypatch.setenv("NOUS_TEST_FLAG", "")
    assert envbool("NOUS_TEST_FLAG", False) is False


@pytest.mark.parametrize("value", ["maybe", "2", "y", "enabled"])
def test_envbool_refuses_anything_else(monkeypatch, value):
    monkeypatch.setenv("NOUS_TEST_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match=f"NOUS_TEST_FLAG='{value}'"):
        envbool("NOUS_TEST_FLAG", False)


def test_envint_bounds(monkeypatch):
    monkeypatch.setenv("NOUS_TEST_N", " 12 ")
    assert envint("NOUS_TEST_N", 3, min=1) == 12
    for bad, why in [("abc", "an integer$"), ("1.5", "an integer$"), ("0", "at least 1"), ("-3", "at least 1")]:
        monkeypatch.setenv("NOUS_TEST_N", bad)
        with pytest.raises(ImproperlyConfigured, match=f"NOUS_TEST_N='{bad}' is not valid: expected .*{why}"):
            envint("NOUS_TEST_N", 3, min=1)
    monkeypatch.setenv("NOUS_TEST_N", "0")
    assert envint("NOUS_TEST_N", 3, min=0) == 0
    monkeypatch.delenv("NOUS_TEST_N")
    assert envint("NOUS_TEST_N", 3, min=1) == 3


def test_envfloat_bounds(monkeypatch):
    monkeypatch.setenv("NOUS_TEST_SECS", "0.5")
    assert envfloat("NOUS_TEST_SECS", 1.0, above=0) == 0.5
    for bad in ["abc", "nan", "inf", "0", "-1"]:
        monkeypatch.setenv("NOUS_TEST_SECS", bad)
        with pytest.raises(ImproperlyConfigured, match=f"NOUS_TEST_SECS='{bad}'"):
            envfloat("NOUS_TEST_SECS", 1.0, above=0)
    monkeypatch.setenv("NOUS_TEST_SECS", "0")
    assert envfloat("NOUS_TEST_SECS", 1.0, min=0) == 0.0  # an interval where 0 means off


def test_envsecret(monkeypatch, tmp_path):
    monkeypatch.delenv("NOUS_TEST_SECRET", raising=False)
    monkeypatch.delenv("NOUS_TEST_SECRET_FILE", raising=False)
    assert envsecret("NOUS_TEST_SECRET", "fallback") == "fallback"
    monkeypatch.setenv("NOUS_TEST_SECRET", "plain")
    assert envsecret("NOUS_TEST_SECRET") == "plain"

    path = tmp_path / "secret"
    path.write_text("s3cret with spaces \n")
    monkeypatch.delenv("NOUS_TEST_SECRET")
    monkeypatch.setenv("NOUS_TEST_SECRET_FILE", str(path))
    assert envsecret("NOUS_TEST_SECRET") == "s3cret with spaces "  # only the newline goes

    monkeypatch.setenv("NOUS_TEST_SECRET", "plain")
    with pytest.raises(ImproperlyConfigured, match="NOUS_TEST_SECRET and NOUS_TEST_SECRET_FILE are both set"):
        envsecret("NOUS_TEST_SECRET")
    monkeypatch.delenv("NOUS_TEST_SECRET")
    monkeypatch.setenv("NOUS_TEST_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="NOUS_TEST_SECRET_FILE=.*cannot be read"):
        envsecret("NOUS_TEST_SECRET")
    path.write_text("\n")
    monkeypatch.setenv("NOUS_TEST_SECRET_FILE", str(path))
    with pytest.raises(ImproperlyConfigured, match="NOUS_TEST_SECRET_FILE=.*is empty"):
        envsecret("NOUS_TEST_SECRET")


# --- System checks ------------------------------------------------------------------------------

def ids(found) -> list[str]:
    return [c.id for c in found]


def test_e001_the_development_key_with_debug_off(settings):
    settings.DEBUG, settings.SECRET_KEY = False, "dev-only-abcdef"
    assert ids(checks.check_secret_key()) == ["nous.E001"]
    settings.SECRET_KEY = "a-production-key-" + "x" * 50
    assert ids(checks.check_secret_key()) == []
    settings.DEBUG, settings.SECRET_KEY = True, "dev-only-abcdef"  # on a laptop it is the point
    assert ids(checks.check_secret_key()) == []


def test_e002_no_allowed_hosts_with_debug_off(settings):
    settings.DEBUG, settings.ALLOWED_HOSTS = False, []
    assert ids(checks.check_allowed_hosts()) == ["nous.E002"]
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert ids(checks.check_allowed_hosts()) == []
    settings.DEBUG, settings.ALLOWED_HOSTS = True, []
    assert ids(checks.check_allowed_hosts()) == []


def test_w002_a_wildcard_host_with_debug_off(settings):
    settings.DEBUG, settings.ALLOWED_HOSTS = False, ["chat.example.com", "*"]
    assert ids(checks.check_wildcard_host()) == ["nous.W002"]
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert ids(checks.check_wildcard_host()) == []


def test_w001_redis_with_sqlite(settings, monkeypatch):
    # The engine is changed in place (and put back): overriding DATABASES would touch the connections.
    database = settings.DATABASES["default"]
    settings.REDIS_URL = "redis://127.0.0.1:6379/6"
    monkeypatch.setitem(database, "ENGINE", "django.db.backends.sqlite3")
    assert ids(checks.check_production_database()) == ["nous.W001"]
    monkeypatch.setitem(database, "ENGINE", "django.db.backends.postgresql")
    assert ids(checks.check_production_database()) == []
    settings.REDIS_URL = ""  # the embedded default: SQLite is the point
    monkeypatch.setitem(database, "ENGINE", "django.db.backends.sqlite3")
    assert ids(checks.check_production_database()) == []


def test_e003_a_stale_timeout_shorter_than_a_few_heartbeats(settings):
    settings.NOUS_CHECKPOINT_SECS, settings.NOUS_RUN_STALE_SECS = 1.0, 2.0
    assert ids(checks.check_run_timeouts()) == ["nous.E003"]
    settings.NOUS_RUN_STALE_SECS = 30.0
    assert ids(checks.check_run_timeouts()) == []


def test_e004_a_slot_lease_shorter_than_a_few_heartbeats(settings):
    settings.NOUS_CHECKPOINT_SECS, settings.NOUS_RUN_SLOT_TTL_SECS = 1.0, 2.0
    assert ids(checks.check_run_timeouts()) == ["nous.E004"]
    settings.NOUS_RUN_SLOT_TTL_SECS = 15.0
    assert ids(checks.check_run_timeouts()) == []


def test_check_deploy_shows_the_checks():
    r = run(["manage.py", "check", "--deploy"], DEBUG="0", SECRET_KEY="dev-only-copied-from-a-laptop",
            REDIS_URL="redis://127.0.0.1:6379/6", NOUS_RUN_STALE_SECS="2", ALLOWED_HOSTS="*")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # errors fail the command
    for check_id in ("nous.E001", "nous.E003", "nous.W001", "nous.W002"):
        assert f"({check_id})" in out, out
    assert "(nous.E002)" not in out  # ALLOWED_HOSTS is set, if too widely


def test_check_deploy_is_quiet_about_a_sound_configuration():
    r = run(["manage.py", "check", "--deploy"], DEBUG="0", SECRET_KEY="k" * 60, ALLOWED_HOSTS="chat.example.com")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "nous." not in out  # Django's own deploy warnings (HSTS, secure cookies) may remain


def test_a_provider_key_comes_from_a_file(tmp_path):
    # The SDKs read the environment: the key is put there, and only once (not also as _FILE).
    path = tmp_path / "anthropic"
    path.write_text("sk-from-file\n")
    r = run(["-c", "import django, os; django.setup(); print(os.environ['ANTHROPIC_API_KEY'], 'ANTHROPIC_API_KEY_FILE' in os.environ)"],
            ANTHROPIC_API_KEY_FILE=str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sk-from-file", "False"]
