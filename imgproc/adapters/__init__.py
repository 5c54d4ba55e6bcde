"""Adapters: where imgproc meets what it does not control, and outside errors become imgproc's.

    urls.py      which URLs may be reached: strict parsing, private addresses refused, the allow-list
    fetch.py     photos from vendors' URLs (and webhook POSTs): pinned to checked addresses, bounded
    storage.py   results on local disk or Cloudinary (Storage)
    db.py        the tables, the engine
    sqlerrors.py SQLAlchemy's errors translated, for db.py's tables and the vendors' own
    records.py   results written back to the vendor's records (ResultWriter)
    vendors.py   vendors and their API keys (VendorDirectory)
    writeback.py results written into the vendors' own tables too (ResultTargets), as
                 writeback_config.py reads them from IMGPROC_WRITEBACK_FILE

Each module opens with the contract (a Protocol) the rest of imgproc relies on,
and translates its library's errors into ``TransientError`` (retried) or
``PermanentError`` (failed at once) with a stable code.
"""
