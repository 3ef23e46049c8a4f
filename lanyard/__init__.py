"""The Django project package: settings, URLs, the Celery app, WSGI/ASGI, the admin door."""

from .celery import app as celery_app

__all__ = ("celery_app",)
