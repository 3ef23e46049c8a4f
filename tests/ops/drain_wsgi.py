"""Lanyard's WSGI application with one slow path, for the gunicorn drain test (never deployed).

``GET /__drain__`` writes ``$DRAIN_MARKER`` when it starts (so the test knows it is in flight), sleeps
``$DRAIN_SECONDS``, then answers as ``/health/live`` does, through Lanyard's whole middleware stack.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lanyard.wsgi import application as lanyard_application


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/__drain__":
        Path(os.environ["DRAIN_MARKER"]).write_text(str(os.getpid()))
        time.sleep(float(os.environ["DRAIN_SECONDS"]))
        environ["PATH_INFO"] = "/health/live"
    return lanyard_application(environ, start_response)
