"""Records write-back, on SQLite and on the real MariaDB."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import sqlalchemy as sa

from imgproc.adapters.db import make_engine, records
from imgproc.adapters.records import FIELDS, Records
from imgproc.errors import TransientError

DOWN_URL = "mysql+pymysql://root:s3cret@127.0.0.1:1/x"


def count_statements(engine, verb: str) -> list[str]:
    """Collect the statements starting with ``verb`` that ``engine`` sends from now on."""
    seen: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(verb):
            seen.append(statement)

    return seen


def test_save_result_writes_the_operation_column(engine):
    before = dt.datetime.now(dt.UTC)
    Records(engine).save_result(
        "acme", "rec-1", "remove-bg", "https://cdn/bg.png", original_url="https://photos/1.jpg"
    )
    row = Records(engine).get("acme", "rec-1")
    assert row["bg_removed_url"] == "https://cdn/bg.png"
    assert row["original_url"] == "https://photos/1.jpg"
    assert row["processed"] is True
    assert row["face_crop_url"] is None and row["processed_url"] is None
    assert row["created_at"] >= before - dt.timedelta(seconds=1)
    assert row["updated_at"] >= row["created_at"]
    assert row["updated_at"].tzinfo == dt.UTC


def test_unknown_record_is_none(engine):
    assert Records(engine).get("acme", "missing") is None
    assert Records(engine).count() == 0


def test_saving_twice_keeps_one_row(engine):
    recs = Records(engine)
    for _ in range(2):
        recs.save_result("acme", "rec-1", "crop-face", "https://cdn/face.png")
    assert recs.count() == 1
    assert recs.get("acme", "rec-1")["face_crop_url"] == "https://cdn/face.png"


def test_two_operations_fill_both_columns(engine):
    recs = Records(engine)
    recs.save_result("acme", "rec-1", "remove-bg", "https://cdn/bg.png", "https://photos/1.jpg")
    recs.save_result("acme", "rec-1", "crop-face", "https://cdn/face.png")
    row = recs.get("acme", "rec-1")
    assert row["bg_removed_url"] == "https://cdn/bg.png"
    assert row["face_crop_url"] == "https://cdn/face.png"
    assert row["original_url"] == "https://photos/1.jpg"  # kept when not given again
    assert recs.count() == 1


def test_record_ids_are_per_vendor_and_case_sensitive(engine):
    recs = Records(engine)
    recs.save_result("acme", "recA", "remove-bg", "https://cdn/1.png")
    recs.save_result("acme", "reca", "remove-bg", "https://cdn/2.png")
    recs.save_result("other", "recA", "remove-bg", "https://cdn/3.png")
    assert recs.count() == 3
    assert recs.count("acme") == 2
    assert recs.get("acme", "reca")["bg_removed_url"] == "https://cdn/2.png"


@pytest.mark.parametrize("max_fields", [1, 2, 10])
def test_update_fields_chunks_the_updates(engine, max_fields):
    fields = {name: f"https://cdn/{name}" for name in sorted(FIELDS) if name != "processed"}
    fields["processed"] = True
    updates, upserts = count_statements(engine, "UPDATE"), count_statements(engine, "INSERT")
    Records(engine, max_fields=max_fields).update_fields("acme", "rec-1", fields)
    # the first chunk rides on the upsert (INSERT ... ON CONFLICT / ON DUPLICATE KEY UPDATE)
    assert len(upserts) == 1 and len(updates) + 1 == math.ceil(len(fields) / max_fields)
    assert all(u.count("=?") + u.count("=%s") <= max_fields + 3 for u in updates)  # + updated_at, the key
    row = Records(engine).get("acme", "rec-1")
    assert {name: row[name] for name in fields} == fields


def test_save_result_goes_through_the_chunks(engine):
    updates = count_statements(engine, "UPDATE")
    Records(engine, max_fields=1).save_result("acme", "rec-1", "process-image", "u", "o")
    assert len(updates) == 2  # result column (in the upsert), then processed, then original_url


def test_unknown_field_is_refused(engine):
    with pytest.raises(ValueError, match="vendor"):
        Records(engine).update_fields("acme", "rec-1", {"processed": True, "vendor": "evil"})
    with pytest.raises(ValueError, match="operation"):
        Records(engine).save_result("acme", "rec-1", "sharpen", "u")
    assert Records(engine).count() == 0


def test_save_results_batches_transactions(engine):
    rows = [
        {"vendor": "acme", "record_id": f"rec-{i}", "operation": "crop-face", "url": f"u{i}"}
        for i in range(250)
    ]
    commits = []
    sa.event.listen(engine, "commit", lambda conn: commits.append(conn))
    Records(engine).save_results(rows)
    assert len(commits) == 3
    assert Records(engine).count("acme") == 250
    assert Records(engine).get("acme", "rec-249")["face_crop_url"] == "u249"


def test_save_results_checks_every_row_first(engine):
    rows = [
        {"vendor": "acme", "record_id": f"r{i}", "operation": "remove-bg", "url": "u"} for i in range(150)
    ]
    rows.append({"vendor": "acme", "record_id": "bad", "operation": "nope", "url": "u"})
    with pytest.raises(ValueError):
        Records(engine).save_results(rows)
    assert Records(engine).count() == 0


def test_two_writers_on_one_new_record(engine):
    """Two workers write different results of the same new record at once: one row, both results."""
    import threading

    barrier = threading.Barrier(2)

    def write(operation):
        barrier.wait()
        Records(engine).save_result("acme", "rec-1", operation, f"https://cdn/{operation}")

    threads = [threading.Thread(target=write, args=(op,)) for op in ("crop-face", "remove-bg")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = Records(engine).get("acme", "rec-1")
    assert (row["bg_removed_url"], row["face_crop_url"]) == ("https://cdn/remove-bg", "https://cdn/crop-face")
    assert row["writes"] == 2 and Records(engine).count() == 1


def test_down_database_is_transient_without_password(settings):
    engine = sa.create_engine(DOWN_URL)
    with pytest.raises(TransientError) as info:
        Records(engine).save_result("acme", "rec-1", "remove-bg", "u")
    assert info.value.code == "database_failed"
    assert info.value.retryable
    assert "s3cret" not in info.value.message and "s3cret" not in str(info.value)

    with pytest.raises(TransientError) as info:
        make_engine(settings.replace(database_url=DOWN_URL))
    assert info.value.code == "database_failed" and "s3cret" not in info.value.message


def test_make_engine_creates_the_sqlite_folder(settings, tmp_path):
    engine = make_engine(settings.replace(database_url=f"sqlite:///{tmp_path / 'a' / 'b.db'}"))
    assert sa.inspect(engine).has_table(records.name)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
