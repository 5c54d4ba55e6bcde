"""The HTTP API: ``gunicorn api:app`` in production, ``make run-api`` (Flask's server) for development."""

from imgproc.app import create_app

app = create_app()
