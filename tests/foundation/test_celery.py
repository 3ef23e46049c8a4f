"""Celery: configured from Django settings; eager in unit tests; a real worker on Redis in CI."""

import threading

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings

from lanyard.celery import app, heartbeat


def test_celery_reads_django_settings():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late is True
    assert "heartbeat" in app.conf.beat_schedule


def test_tasks_run_eagerly_in_unit_tests():
    assert heartbeat.delay().get() is not None


@pytest.mark.django_db
def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, f"beat entry {name} names unknown task {entry['task']}"


@pytest.mark.services
def test_a_real_worker_on_redis_runs_a_task(transactional_db):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "the services pass runs on Redis"
    done = threading.Event()
    seen: list[str] = []

    def on_postrun(task_id=None, task=None, state=None, **kwargs):
        if task is not None and task.name == "lanyard.heartbeat":
            seen.append(state)
            done.set()

    task_postrun.connect(on_postrun, weak=False)
    app.conf.task_always_eager = False
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
        ):
            heartbeat.delay()
            assert done.wait(timeout=30), "the worker did not run the task within 30 s"
    finally:
        app.conf.task_always_eager = True
        task_postrun.disconnect(on_postrun)
    assert seen == ["SUCCESS"]
