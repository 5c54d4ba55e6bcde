"""What operators and developers run: the ``imgproc`` command and what it drives.

cli.py          ``imgproc``: the commands and their dispatch
admin.py        the tables of ``imgproc jobs`` and ``imgproc queues``
vendor_admin.py ``imgproc vendors``: add, list, remove, purge, limits
migrate.py      ``imgproc db upgrade``
workerstatus.py ``imgproc workers --status`` and the workers' health check
apihealth.py    the API container's health check
submit.py, submit_display.py, submit_records.py
                ``imgproc submit``
demo.py         ``imgproc demo`` (``make demo``), on the harness's local stack (``imgproc.testing``)

The model files are ``imgproc.modelfiles`` (``imgproc models``); the local stack of the demo, the
bench and the tests is ``imgproc.testing``.

A package, not a namespace: without this file the wheel (and so the images) left it out.
"""
