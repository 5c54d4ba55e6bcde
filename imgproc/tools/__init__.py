"""What operators and developers run: the ``imgproc`` command and what it drives.

cli.py          ``imgproc``: the commands and their dispatch
admin.py        the tables of ``imgproc jobs`` and ``imgproc queues``
vendor_admin.py ``imgproc vendors``: add, list, remove, purge, limits
migrate.py      ``imgproc db upgrade``
workerstatus.py ``imgproc workers --status`` and the workers' health check
apihealth.py    the API container's health check
provision.py, manifest.py, derive.py, variants.py
                ``imgproc models fetch``: model files verified against models/manifest.json
submit.py, submit_display.py, submit_records.py
                ``imgproc submit``
stack.py, demo.py
                a local stack (Redis, API, workers) for the demo, the bench and the tests

A package, not a namespace: without this file the wheel (and so the images) left it out.
"""
