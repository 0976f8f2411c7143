"""Project wiring: env-driven settings, the Celery app on a real worker, the demo login."""

import http.cookiejar
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from couponsite.celery import app
from couponsite.templatetags.site_tags import duration
from couponsite.wording import counted

ROOT = Path(__file__).resolve().parents[1]


def _settings_in_subprocess(env: dict, expression: str) -> str:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='couponsite.settings'; "
        f"django.setup(); from django.conf import settings as s; print({expression})"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_embedded_default_needs_no_services(tmp_path):
    out = _settings_in_subprocess(
        {"DEBUG": "true", "COUPONS_VAR_DIR": str(tmp_path)},
        "s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.MEDIA_ROOT",
    )
    assert "sqlite3" in out and "filesystem://" in out and str(tmp_path) in out
    assert (tmp_path / "broker" / "queue").is_dir()


def test_production_settings_come_from_the_environment():
    out = _settings_in_subprocess(
        {
            "SECRET_KEY": "s3cret", "ALLOWED_HOSTS": "coupons.example.com",
            "DATABASE_URL": "postgres://u:p@db.internal:5432/coupons",
            "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
        },
        "s.DEBUG, s.ALLOWED_HOSTS, s.DATABASES['default']['HOST'], s.CELERY_BROKER_URL",
    )
    assert out == "False ['coupons.example.com'] db.internal redis://redis.internal:6379/0"


def test_production_refuses_to_start_without_a_secret_key():
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='couponsite.settings'; django.setup()"
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Set SECRET_KEY" in result.stderr


def _readme_production_environment() -> dict:
    """The variables the README's production block exports (``$(...)`` run as a shell would)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Production", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    environment = {}
    for line in block.splitlines():
        if line.startswith("export "):
            line = re.sub(r"\$\((.*?)\)(?=\s|$)", lambda m: shlex.quote(subprocess.run(
                ["bash", "-c", m.group(1)], capture_output=True, text=True, check=True).stdout.strip()), line)
            for word in shlex.split(line, comments=True)[1:]:
                name, _, value = word.partition("=")
                environment[name] = value
    return environment


def _check_deploy(environment: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={**clean, **environment}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_the_readmes_production_settings():
    environment = _readme_production_environment()
    assert len(environment["SECRET_KEY"]) >= 50 and environment["SECURE_PROXY_SSL_HEADER"] == "X-Forwarded-Proto: https"
    result = _check_deploy(environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

    # Without the HTTPS settings the same check fails (HSTS and the redirect)
    for name in ("SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT"):
        environment.pop(name)
    result = _check_deploy(environment)
    assert result.returncode != 0 and "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.parametrize(("value", "expected"), [
    ("X-Forwarded-Proto: https", "('HTTP_X_FORWARDED_PROTO', 'https')"),
    ("x-forwarded-ssl:on", "('HTTP_X_FORWARDED_SSL', 'on')"),
    ("", "None"),
])
def test_the_proxy_ssl_header_and_hsts_come_from_the_environment(value, expected):
    out = _settings_in_subprocess(
        {"DEBUG": "true", "SECURE_PROXY_SSL_HEADER": value, "SECURE_HSTS_SECONDS": "600"},
        "s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_SECONDS",
    )
    assert out == f"{expected} 600"


def test_a_malformed_proxy_ssl_header_is_refused_at_start():
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='couponsite.settings'; django.setup()"
    env = {**os.environ, "DEBUG": "true", "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SECURE_PROXY_SSL_HEADER must look like 'X-Forwarded-Proto: https'" in result.stderr


def test_a_real_celery_worker_answers_on_redis():
    # Given a worker process started the way production starts one
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "couponsite", "worker", "--pool=solo",
         "--without-gossip", "--without-mingle", f"--hostname={name}", "--loglevel=WARNING"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        # When we ping it over the broker the app is configured with
        assert app.conf.broker_url.startswith("redis://")
        deadline, replies = time.monotonic() + 60, []
        while time.monotonic() < deadline and not replies:
            assert worker.poll() is None, worker.stderr.read().decode()
            replies = app.control.ping(destination=[name], timeout=1.0)
        # Then it answers
        assert replies == [{name: {"ok": "pong"}}]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.django_db
def test_demo_setup_prints_the_login_and_is_idempotent(capsys):
    call_command("demo_setup")
    call_command("demo_setup")
    out = capsys.readouterr().out
    assert "username 'demo', password 'demo-coupons'" in out
    user = get_user_model().objects.get(username="demo")
    assert user.is_superuser and user.check_password("demo-coupons")
    assert get_user_model().objects.filter(username="demo").count() == 1


@pytest.mark.django_db
def test_demo_setup_keeps_an_existing_users_password_and_sessions(client, capsys):
    # Given the demo user, created by a first `make run`, then given its own password
    call_command("demo_setup")
    user = get_user_model().objects.get(username="demo")
    user.set_password("my-own-password")
    user.save()
    client.force_login(user)
    capsys.readouterr()
    # When `make run` runs demo_setup again
    call_command("demo_setup")
    out = capsys.readouterr().out
    # Then the password and the session are as they were, and the message says so
    user.refresh_from_db()
    assert user.check_password("my-own-password") and not user.check_password("demo-coupons")
    assert client.get("/pools/").status_code == 200
    assert "username 'demo', password unchanged" in out and "changepassword demo" in out
    assert "'demo-coupons'" not in out.split("(it is not")[0]


@pytest.mark.django_db
def test_demo_setup_says_an_unchanged_default_password(capsys):
    call_command("demo_setup")
    assert "Demo login (created): username 'demo', password 'demo-coupons'" in capsys.readouterr().out
    call_command("demo_setup")
    assert "Demo login: username 'demo', password 'demo-coupons' (unchanged)" in capsys.readouterr().out


def _procfile_web_command(env: dict) -> str:
    """couponsite/Procfile.dev's web line as honcho's shell expands it in ``env``."""
    line = next(line for line in (ROOT / "couponsite" / "Procfile.dev").read_text().splitlines() if line.startswith("web:"))
    clean = {k: v for k, v in os.environ.items() if k not in {"WEB_HOST", "WEB_PORT"}}
    result = subprocess.run(["sh", "-c", f"echo {line.split(':', 1)[1].strip()}"], env={**clean, **env},
                            capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()


@pytest.mark.django_db
@pytest.mark.parametrize("env, address", [
    ({}, "127.0.0.1:8000"), ({"WEB_PORT": "8100"}, "127.0.0.1:8100"),
    ({"WEB_HOST": "localhost", "WEB_PORT": "8200"}, "localhost:8200"),
])
def test_the_start_message_names_the_address_the_web_server_serves(env, address, monkeypatch, capsys):
    monkeypatch.delenv("WEB_HOST", raising=False)
    monkeypatch.delenv("WEB_PORT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    call_command("demo_setup")
    assert f"Open http://{address}/ and log in." in capsys.readouterr().out
    assert _procfile_web_command(env) == f"python manage.py runserver --insecure {address}"


MAKE_RUN_ENV = ("WEB_HOST", "WEB_PORT", "ALLOWED_HOSTS", "DEBUG", "SECRET_KEY", "SECURE_COOKIES",
                "COUPON_CALLBACK_ALLOW_LOOPBACK", "MAKEFLAGS")


@pytest.mark.parametrize("env, address, hosts", [
    ({}, "127.0.0.1:8000", "127.0.0.1,localhost,127.0.0.1"),
    ({"WEB_PORT": "8100"}, "127.0.0.1:8100", "127.0.0.1,localhost,127.0.0.1"),
    ({"WEB_HOST": "myhost"}, "myhost:8000", "127.0.0.1,localhost,myhost"),
    ({"WEB_HOST": "myhost", "ALLOWED_HOSTS": "myhost"}, "myhost:8000", "myhost"),
])
def test_make_run_gives_its_commands_the_address(env, address, hosts, tmp_path):
    """`make run` itself, on a stand-in virtualenv whose python and honcho only write
    down the address and the settings they were given."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    for name in ("python", "honcho"):
        tool = venv / "bin" / name
        tool.write_text(f'#!/bin/sh\necho "{name} $WEB_HOST:$WEB_PORT $*" >> {log}\n'
                        f'echo "$ALLOWED_HOSTS DEBUG=$DEBUG SECURE_COOKIES=$SECURE_COOKIES" >> {log}\n')
        tool.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    clean = {k: v for k, v in os.environ.items() if k not in MAKE_RUN_ENV}
    subprocess.run(["make", "-s", "run", f"VENV={venv}"], cwd=ROOT, check=True, timeout=30,
                   env={**clean, "COUPONS_VAR_DIR": str(tmp_path / "var"), **env})
    calls = log.read_text().splitlines()
    settings = f"{hosts} DEBUG=false SECURE_COOKIES=false"
    assert calls == [
        f"python {address} manage.py migrate --noinput", settings,
        f"python {address} manage.py demo_setup", settings,
        f"honcho {address} --procfile couponsite/Procfile.dev --app-root . start", settings,
    ]


def test_make_run_makes_a_secret_key_once_per_checkout(tmp_path):
    """No published key: the first `make run` writes one to the var directory, later runs
    read the same (sessions and signed links keep working), another checkout gets its own."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "keys.log"
    for name in ("python", "honcho"):
        tool = venv / "bin" / name
        tool.write_text(f'#!/bin/sh\necho "$SECRET_KEY" >> {log}\n')
        tool.chmod(0o755)
    (venv / ".installed").touch()
    clean = {k: v for k, v in os.environ.items() if k not in MAKE_RUN_ENV}
    for var in ("one", "one", "two"):
        subprocess.run(["make", "-s", "run", f"VENV={venv}"], cwd=ROOT, timeout=30, check=True,
                       env={**clean, "COUPONS_VAR_DIR": str(tmp_path / var)})
    keys = log.read_text().splitlines()
    assert len(keys) == 9 and len(set(keys[:6])) == 1 and len(set(keys[6:])) == 1 and keys[0] != keys[6]
    assert len(keys[0]) >= 50 and "insecure" not in keys[0]
    assert (tmp_path / "one" / "secret_key").read_text().strip() == keys[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_run_serves_the_product_as_its_users_see_it(tmp_path):
    """The real `make run` (web, worker and beat through honcho) on a stand-in virtualenv
    that runs this Python, with a host name of its own: the login works over plain HTTP,
    a missing page is the styled 404 with the menu, static files are served, and the
    console shows each request."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, command in (("python", sys.executable), ("honcho", f"{sys.executable} -m honcho"),
                          ("celery", f"{sys.executable} -m celery")):
        tool = venv / "bin" / name
        tool.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        tool.chmod(0o755)
    (venv / ".installed").touch()
    host, port = "127.0.0.2", _free_port()  # a loopback address that is not in the default ALLOWED_HOSTS
    clean = {k: v for k, v in os.environ.items()
             if k not in {*MAKE_RUN_ENV, "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE"}}
    env = {**clean, "WEB_HOST": host, "WEB_PORT": str(port), "COUPONS_VAR_DIR": str(tmp_path / "var")}
    console = tmp_path / "console.log"
    with console.open("w") as out:
        make = subprocess.Popen(["make", "-s", "run", f"VENV={venv}"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://{host}:{port}"
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        deadline = time.monotonic() + 180
        while True:
            try:
                login = browser.open(f"{base}/login/", timeout=5).read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert make.poll() is None and time.monotonic() < deadline, console.read_text()
                time.sleep(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "demo", "password": "demo-coupons"})
        landed = browser.open(urllib.request.Request(f"{base}/login/", data=form.encode(),
                                                     headers={"Referer": f"{base}/login/"}), timeout=30)
        assert landed.url == f"{base}/pools/"
        with pytest.raises(urllib.error.HTTPError) as missing:
            browser.open(f"{base}/no-such-page/", timeout=30)
        page = missing.value.read().decode()
        assert missing.value.code == 404 and "Page not found" in page and 'aria-label="Main"' in page
        assert "technical" not in page and "DEBUG = True" not in page
        stylesheet = browser.open(f"{base}/static/css/app.css", timeout=30)
        assert stylesheet.status == 200 and stylesheet.read() == (ROOT / "static" / "css" / "app.css").read_bytes()
        while "Not Found: /no-such-page/" not in console.read_text():  # what went wrong, in the console
            assert time.monotonic() < deadline, console.read_text()
            time.sleep(0.5)
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)


def test_embedded_default_worker_runs_a_real_task(tmp_path):
    """`make run`'s setup: SQLite and the file-system broker, with a real worker."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"DEBUG": "true", "COUPONS_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "couponsite.settings"})
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    seed = (
        "from datetime import timedelta; from django.utils import timezone;"
        "from pools.services import pool_create; from coupons.models import Coupon, Customer;"
        "p = pool_create(actor=None, name='p', source='uploaded', coupon_type='amount', value=1);"
        "c = Customer.objects.create(external_id='C1');"
        "Coupon.objects.create(pool=p, terms=p.current_terms, code='OLD-1', status=2, customer=c,"
        " claimed_at=timezone.now() - timedelta(days=40), expires_at=timezone.now() - timedelta(days=10))"
    )
    subprocess.run([*manage, "shell", "-c", seed], cwd=ROOT, env=env, check=True, timeout=60)
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed in finally
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "couponsite", "worker", "--pool=solo", "--loglevel=INFO",
         "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        subprocess.run([sys.executable, "-m", "celery", "-A", "couponsite", "call", "coupons.tasks.expire_coupons"],
                       cwd=ROOT, env=env, check=True, timeout=60, capture_output=True)
        check = "from coupons.models import Coupon; print(Coupon.objects.get(code='OLD-1').status)"
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline and status != "5":
            time.sleep(0.5)
            output = subprocess.run([*manage, "shell", "-c", check], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=60).stdout.strip()
            status = output.splitlines()[-1] if output else ""
        assert status == "5", (tmp_path / "worker.log").read_text()  # 5: CouponStatus.EXPIRED
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


def migrated_embedded_default(tmp_path, **settings) -> tuple[dict, list[str]]:
    """The environment of the embedded default (SQLite under ``tmp_path``), migrated."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"DEBUG": "true", "COUPONS_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "couponsite.settings",
                **settings})
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    return env, manage


def embedded_shell(env: dict, manage: list[str], script: str) -> list[str]:
    """Run ``script`` in ``manage.py shell`` on the embedded default; the lines it printed."""
    out = subprocess.run([*manage, "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_embedded_default_generates_a_batch_on_sqlite(tmp_path):
    """Bulk generation's portable path (INSERT OR IGNORE) on the embedded SQLite."""
    env, manage = migrated_embedded_default(tmp_path, COUPON_GENERATION_CHUNK="3000")
    make_pool = (
        "from pools.services import pool_create;"
        "pool_create(actor=None, name='bulk', external_id='SQLITE-BULK', source='bulk', pattern='SQ-$$$$$$',"
        " excluded_characters='O,0', coupon_type='amount', value=1)"
    )
    subprocess.run([*manage, "shell", "-c", make_pool], cwd=ROOT, env=env, check=True, timeout=60)
    run = subprocess.run([*manage, "generate_coupons", "SQLITE-BULK", "--count", "10000"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "10,000 coupons generated" in run.stdout
    count = subprocess.run(
        [*manage, "shell", "-c", "from coupons.models import Coupon; c = Coupon.objects.filter(pool__external_id="
         "'SQLITE-BULK'); print(c.count(), c.values('code').distinct().count(), c.filter(code__contains='0').count())"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    ).stdout.strip().splitlines()[-1]
    assert count == "10000 10000 0"


def test_embedded_default_imports_a_file_on_sqlite(tmp_path):
    """The import service's portable path (no COPY, no unlogged table) on the embedded SQLite."""
    env, manage = migrated_embedded_default(tmp_path, COUPON_IMPORT_CHUNK="3")
    setup = (
        "from pools.services import pool_create; from coupons.models import Customer;"
        "pool_create(actor=None, name='uploads', external_id='SQLITE-UP', source='uploaded', coupon_type='amount', value=1);"
        "pool_create(actor=None, name='other', external_id='SQLITE-OTHER', source='uploaded', coupon_type='amount', value=1);"
        "Customer.objects.create(external_id='anna')"
    )
    subprocess.run([*manage, "shell", "-c", setup], cwd=ROOT, env=env, check=True, timeout=60)
    (tmp_path / "other.csv").write_text("TAKEN-1\n")
    (tmp_path / "codes.csv").write_text(
        "code;customer;expires_at\nSQ-1;;\nSQ-2;anna;2099-03-01\nSQ-1;;\nTAKEN-1;;\n  SQ-3  ;nobody;\n\nSQ-4;;\n"
    )
    first = subprocess.run([*manage, "import_coupons", "SQLITE-OTHER", str(tmp_path / "other.csv")], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    run = subprocess.run([*manage, "import_coupons", "SQLITE-UP", str(tmp_path / "codes.csv"), "--delimiter", "semicolon"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert ("6 rows read, 3 coupons created, 1 duplicate in the file, 1 code that exists already, "
            "1 invalid row") in run.stdout
    check = (
        "from coupons.models import Coupon, CustomerEvent; from imports.models import ImportRejection;"
        "c = Coupon.objects.filter(pool__external_id='SQLITE-UP').order_by('code');"
        "print([(x.code, x.status, x.customer_id is not None, x.expires_at and x.expires_at.isoformat()) for x in c]);"
        "print(CustomerEvent.objects.filter(action='coupon_claim').count(),"
        " list(ImportRejection.objects.order_by('row').values_list('row', 'outcome')))"
    )
    out = subprocess.run([*manage, "shell", "-c", check], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60).stdout.strip().splitlines()
    assert out[-2] == ("[('SQ-1', 1, False, None), ('SQ-2', 2, True, '2099-03-01T23:59:59+00:00'), "
                       "('SQ-4', 1, False, None)]")
    assert out[-1] == "1 [(4, 2), (5, 3), (6, 1)]"
    missing = subprocess.run([*manage, "import_coupons", "SQLITE-UP", str(tmp_path / "nope.csv")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "No such file" in missing.stderr


def test_embedded_default_runs_jobs_and_lists_them_on_sqlite(tmp_path):
    """The job engine's portable paths on the embedded SQLite: a bulk action and an
    export run in this process (no heartbeat thread, no COPY), the Jobs page's UNION."""
    env, manage = migrated_embedded_default(tmp_path, COUPON_BULK_CHUNK="2", MEDIA_ROOT=str(tmp_path / "media"))
    script = (
        "from django.contrib.auth.models import User; from django.test import Client;"
        "from pools.services import pool_create; from coupons.models import Coupon, CouponJob, ExportJob;"
        "from coupons.jobs.engine import job_create, job_execute; from coupons.exports import export_submit;"
        "p = pool_create(actor=None, name='p', source='uploaded', coupon_type='amount', value=1);"
        "[Coupon.objects.create(pool=p, terms=p.current_terms, code=f'SQJ-{n}') for n in range(5)];"
        "j = job_create(CouponJob, kind='bulk_action', pool=p, params={'action': 'invalidate', 'filters': {}, 'ids': None}, enqueue=False);"
        "print(job_execute(kind='bulk_action', job_id=j.pk).message);"
        "e = job_execute(kind='export', job_id=export_submit(pool=p, filters={'q': 'SQJ-1'}, compress=False, user=None, total=1).pk);"
        "print(e.message, open(e.file.path).read().splitlines()[1][:6]);"
        "u = User.objects.create_superuser('root', 'r@example.com', 'pw'); c = Client(); c.force_login(u);"
        "r = c.get('/jobs/', HTTP_HOST='127.0.0.1');"
        "import re; print(r.status_code, re.findall(r'data-kind=\"(\\w+)\" data-status=\"(\\w+)\"', r.content.decode()))"
    )
    lines = embedded_shell(env, manage, script)
    assert lines[-3] == "Invalidated 5 coupons."
    assert lines[-2] == "1 coupon exported. SQJ-1,"
    assert lines[-1] == "200 [('export', 'done'), ('bulk_action', 'done')]"


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_readme_link_works_in_a_fresh_clone():
    text = (ROOT / "README.md").read_text()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    anchors = {_github_anchor(line.lstrip("#")) for line in prose.splitlines() if line.startswith("#")}
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    links = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert links, "the README links its own sections"
    for link in links:
        path, _, anchor = link.partition("#")
        assert not re.match(r"[a-z]+:", path), f"{link}: the README links nothing outside the repository"
        if path:
            resolved = (ROOT / path).resolve()
            assert resolved.is_relative_to(ROOT), f"{link} points outside the repository"
            relative = str(resolved.relative_to(ROOT))
            assert relative in tracked or any(name.startswith(relative + "/") for name in tracked), f"{link} is not in the repository"
        else:
            assert anchor in anchors, f"{link}: no such heading in the README"


def test_readme_quick_start_is_two_commands_and_names_the_quick_loop():
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = re.search(r"```sh\n(.*?)```", quick_start, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make run", "make test"]
    assert """make test PYTEST_ARGS="-m 'not browser'\"""" in quick_start
    # the marker the quick loop leaves out is the one the browser tests carry
    assert '"browser: ' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("count, text", [(0, "0 coupons"), (1, "1 coupon"), (2, "2 coupons"), (2_000, "2,000 coupons")])
def test_counted_says_the_noun_that_fits_the_count(count, text):
    assert counted(count, "coupon", "coupons") == text


@pytest.mark.parametrize("value, text", [
    (timedelta(seconds=1), "1 second"), (timedelta(seconds=2), "2 seconds"),
    (timedelta(days=1, hours=1, minutes=1), "1 day 1 hour 1 minute"),
    (timedelta(days=2, hours=2, minutes=2), "2 days 2 hours 2 minutes"), (None, ""),
])
def test_a_duration_reads_in_the_singular_and_the_plural(value, text):
    assert duration(value) == text


def test_embedded_default_counts_stock_and_bulk_previews_past_their_limits_on_sqlite(tmp_path):
    """SQLite has no planner estimates: the pool list's stock and the bulk dialog's counts
    past their exact limits are counted instead (two pools past the limit once made the
    pool list's single EXPLAIN fail there)."""
    env, manage = migrated_embedded_default(tmp_path)
    script = (
        "from pools.services import pool_create; from coupons.models import Coupon, CouponStatus;"
        "from coupons import bulk; from coupons.selectors import pools_stock;"
        "pools = [pool_create(actor=None, name=f'p{n}', source='uploaded', coupon_type='amount', value=1) for n in range(3)];"
        "[Coupon.objects.create(pool=p, terms=p.current_terms, code=f'SQS-{p.pk}-{n}') for p in pools for n in range(5)];"
        "Coupon.objects.filter(code__endswith='-4').update(status=CouponStatus.REDEEMED);"
        "stock = pools_stock(pools, limit=2); print([(s.count, s.estimated) for s in stock.values()]);"
        "bulk.PREVIEW_LIMIT = 2;"
        "p = bulk.bulk_preview(action=bulk.BULK_ACTIONS['invalidate'], queryset=Coupon.objects.filter(pool=pools[0]), pool_id=pools[0].pk);"
        "print(p.applied, dict(p.skipped), p.estimated)"
    )
    lines = embedded_shell(env, manage, script)
    assert lines[-2] == "[(4, False), (4, False), (4, False)]"
    assert lines[-1] == "4 {'already redeemed': 1} False"
