"""The HTTP API: ``gunicorn api:app`` in production, ``make run-api`` (Flask's server) for development."""

from imgproc.api import create_app

app = create_app()
