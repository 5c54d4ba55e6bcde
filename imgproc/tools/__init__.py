"""What operators and developers run: the ``imgproc`` command, one module per command.

cli.py          ``imgproc``: the commands' parsers assembled (``COMMANDS``), errors said in a line
vendors.py      ``imgproc vendors``: add, list, rotate, remove, purge; webhook secrets
models.py       ``imgproc models``: fetch and check the model files (``imgproc.modelfiles``)
workers.py      ``imgproc workers``: a pool of workers in the foreground, or ``--status``
workerstatus.py the workers' table and their health check (``python -m imgproc.tools.workerstatus``)
jobs.py         ``imgproc jobs``: failed jobs, retried
webhooks.py     ``imgproc webhooks``: undelivered webhooks, redelivered
queues.py       ``imgproc queues``: counts per queue and per vendor
tables.py       the plain text tables of those three
db.py           ``imgproc db``: upgrade, current, check
writeback.py    ``imgproc writeback check``
demo.py         ``imgproc demo`` (``make demo``), on the harness's local stack (``imgproc.testing``)
submit.py, submit_display.py, submit_records.py
                ``imgproc submit``
apihealth.py    the API container's health check

Each command's module declares its options (``add_parser(sub)``) beside the handler it sets
(``run(args, settings)``), after celery's ``bin/purge.py`` and rq's ``cli/``.

A package, not a namespace: without this file the wheel (and so the images) left it out.
"""
