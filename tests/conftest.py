import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with no rate-limit counters or lock-outs (the cache is Redis)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def fake_dns(monkeypatch):
    """Answers chosen names with chosen addresses (a list per lookup, consumed in order);
    every other name goes to the real resolver. Patches socket.getaddrinfo for everyone,
    urllib3 included, so a second lookup by the HTTP library would be seen."""
    real = socket.getaddrinfo
    answers: dict[str, list] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        result = []
        for address in answers[host].pop(0):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            result.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return result

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    getaddrinfo.answers = answers
    getaddrinfo.lookups = lookups
    return getaddrinfo


@pytest.fixture
def manager(db):
    return UserFactory(username="manager")


@pytest.fixture
def superuser(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


class WorkerProcess:
    """A real ``celery worker`` subprocess on the test broker and the test database."""

    def __init__(self, process):
        self.process = process

    def wait_for(self, load, done, timeout=60):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = load()
            if done(value):
                return value
            assert self.process.poll() is None, "the worker died"
            time.sleep(0.2)
        raise AssertionError("timed out waiting for the worker")


def start_worker(queue: str, **extra_env) -> subprocess.Popen:
    """A real ``celery worker`` subprocess on the test broker and the test database."""
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        **extra_env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "couponsite", "worker", "--pool=solo", "--without-gossip",
         "--without-mingle", "--loglevel=WARNING", f"--hostname={queue}-{uuid.uuid4().hex[:4]}@localhost", "-Q", queue],
        cwd=Path(__file__).resolve().parents[1], env=env,
    )


@pytest.fixture
def celery_worker_process(transactional_db, request):
    """A worker for this test only (its own queue); tests must be transactional.

    ``@pytest.mark.worker_env(NAME="value")`` passes settings to the worker.
    """
    from couponsite.celery import app

    marker = request.node.get_closest_marker("worker_env")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    process = start_worker(queue, **(marker.kwargs if marker else {}))
    app.conf.task_default_queue = queue
    worker = WorkerProcess(process)
    worker.queue = queue
    try:
        yield worker
    finally:
        app.conf.task_default_queue = "celery"
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
