"""Alembic's migration scripts of imgproc's database: ``env.py`` and one file per revision in ``versions/``.

``imgproc.adapters.schema`` runs them (``imgproc db upgrade``); nothing imports them directly.
"""
