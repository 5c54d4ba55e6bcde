"""``imgproc submit`` and ``imgproc demo --serve`` against the real stack (gunicorn, Redis, a worker).

``submit`` sends light ``process-image`` jobs only (no model); the demo runs one worker and its face
crops only, so the one ISNet inference of this module is that worker's warm-up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgproc.client import Client
from imgproc.tools.cli import main
from imgproc.tools.submit_records import UsageError, load_records, parse_option, safe_name, shown
from tests.conftest import REDIS_TEST_URL, production_api


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """gunicorn (gthread, as in production) and one worker of light jobs, on an embedded Redis."""
    # A stream whose client has gone holds its gunicorn thread until its next keep-alive (15 s):
    # the test's stack does not wait for it when it stops.
    env = {"GUNICORN_CMD_ARGS": "--graceful-timeout 2"}
    with production_api(tmp_path_factory.mktemp("submit"), env, 8, "image-processing") as local:
        yield local


@pytest.fixture
def vendor(stack, request):
    """A vendor of this test only (its queue-stats count nothing else): (API URL, key)."""
    return stack.api, stack.add_vendor(re.sub(r"\W", "-", request.node.name)[:60])


@pytest.fixture
def submit(vendor, capsys):
    """``submit("process-image", ...)`` runs ``imgproc submit`` in this process: (code, stdout, stderr)."""

    def run(*argv: str, key: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["submit", *argv, "--api-url", vendor[0], "--api-key", key or vendor[1]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def summary(out: str) -> dict[str, list[str]]:
    """The summary table's rows by record: state, seconds, job id, file or error (cut at its header)."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("record "))
    starts = [lines[header].index(name) for name in ("record", "state", "seconds", "job", "file or error")]
    rows = {}
    for line in lines[header + 1 : -1]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = cells[1:]
    return rows


def image(path: Path) -> tuple[tuple[int, int], str]:
    with Image.open(path) as img:
        return img.size, img.mode


def stats(vendor) -> dict[str, int]:
    with Client(*vendor) as client:
        return next(iter(client.stats()["vendors"].values()))


def test_options_are_json_when_they_parse():
    assert parse_option("size=[300,400]") == ("size", [300, 400])
    assert parse_option("format=png") == ("format", "png")
    assert parse_option("quality=90") == ("quality", 90)
    assert parse_option("strip_metadata=false") == ("strip_metadata", False)
    assert parse_option("bgcolor=#ffffff") == ("bgcolor", "#ffffff")
    assert parse_option("aspect=3:4") == ("aspect", "3:4")
    with pytest.raises(UsageError):
        parse_option("size")


def test_record_ids_become_safe_distinct_file_names():
    assert safe_name("emp-0042") == "emp-0042"
    hostile = ["../../etc/passwd", "a/b", "a b", "<img src=x onerror=alert(1)>", ".hidden", "..", "é", "a_b"]
    names = [safe_name(r) for r in hostile]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", n) and len(n) <= 109 for n in names)
    assert shown("emp\x1b[2J\x07-1") == "emp\\x1b[2J\\x07-1"  # no escape sequence reaches the terminal


def test_a_record_id_the_api_would_refuse_names_its_line(tmp_path):
    """Issue 22 finding 10: a control character in one CSV record id would fail its whole bulk at the API."""
    csv_file = tmp_path / "records.csv"
    csv_file.write_text(
        'record_id,url\nok,https://example.com/a.jpg\n"x\x1b]0;t\x07",https://example.com/b.jpg\n'
    )
    with pytest.raises(
        UsageError, match=r"records.csv:3: the record id x\\x1b\]0;t\\x07 must not hold control"
    ):
        load_records([], str(csv_file))


def test_files_are_uploaded_and_saved_with_the_bytes_the_api_serves(submit, vendor, photos, tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("coffee", "astronaut"):
        (tmp_path / "in" / f"{name}.jpg").write_bytes(photos[name])
    out = tmp_path / "results"
    code, stdout, _ = submit(
        "process-image",
        str(tmp_path / "in" / "coffee.jpg"),
        str(tmp_path / "in" / "astronaut.jpg"),
        "--option",
        "resize=[40,30]",
        "-o",
        "format=png",
        "--out",
        str(out),
    )
    assert code == 0, stdout
    assert re.search(r"^\[uploads: 2/2\] \S+  finished", stdout, re.M)  # plain lines: not a terminal
    assert "\x1b[" not in stdout
    rows = summary(stdout)
    assert sorted(rows) == ["astronaut", "coffee"]
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "coffee.png"]
    with Client(*vendor) as client:
        for record, (state, seconds, job_id, saved) in rows.items():
            job = client.job(job_id)
            assert state == "finished" and float(seconds) >= 0 and saved == str(out / f"{record}.png")
            assert job.record_id == record
            assert (out / f"{record}.png").read_bytes() == httpx.get(job.result.url).content
    assert image(out / "coffee.png")[0] == (40, 27)  # "contain": 600x400 into 40x30


def test_a_csv_of_urls_in_bulks_and_a_failing_url(submit, vendor, photo_server, photos, tmp_path):
    photo_server.serve("/a.jpg", photos["coffee"])
    photo_server.serve("/b.jpg", photos["astronaut"])
    hostile = "../<img src=x onerror=alert(1)>"
    (tmp_path / "photos.csv").write_text(
        "record_id,url\n"
        f"emp-1,{photo_server.url('/a.jpg')}\n"
        f'"{hostile}",{photo_server.url("/b.jpg")}\n'
        f"emp-3,{photo_server.url('/missing.jpg')}\n"
    )
    out = tmp_path / "results"
    code, stdout, _ = submit(
        "process-image", "--csv", str(tmp_path / "photos.csv"), "--bulk-size", "2", "-o", "resize=[32,32]",
        "--out", str(out),
    )  # fmt: skip
    assert code == 1  # a job failed
    assert "[bulk 1/2: " in stdout and "[bulk 2/2: 1/1] emp-3  failed" in stdout
    rows = summary(stdout)
    assert rows["emp-3"][0] == "failed" and rows["emp-3"][3].startswith("fetch_failed: ")
    assert rows["emp-1"][0] == rows[hostile][0] == "finished"
    saved = Path(rows[hostile][3])
    assert saved.parent == out and saved.suffix == ".jpg" and saved.name.startswith("_img_src")
    assert sorted(p.name for p in out.iterdir()) == sorted(["emp-1.jpg", saved.name])
    assert stats(vendor)["failed"] == 1 and stats(vendor)["finished"] == 2


def test_resume_sends_only_what_has_no_result(submit, vendor, photo_server, photos, tmp_path):
    for name in ("a", "b", "c"):
        photo_server.serve(f"/{name}.jpg", photos["coffee"])
    csv_file = tmp_path / "photos.csv"
    csv_file.write_text("".join(f"{n},{photo_server.url(f'/{n}.jpg')}\n" for n in ("a", "b", "c")))
    out = tmp_path / "results"
    args = ("process-image", "--csv", str(csv_file), "-o", "resize=[16,16]", "--out", str(out))
    assert submit(*args)[0] == 0
    (out / "b.jpg").unlink()
    a_bytes = (out / "a.jpg").read_bytes()

    code, stdout, _ = submit(*args, "--resume")
    assert code == 0
    assert "1 photo to " in stdout and "2 skipped" in stdout
    rows = summary(stdout)
    assert [rows[r][0] for r in "abc"] == ["skipped", "finished", "skipped"]
    assert rows["a"][2] == "" and rows["a"][-1] == str(out / "a.jpg")
    assert dict(photo_server.hits) == {"/a.jpg": 1, "/b.jpg": 2, "/c.jpg": 1}
    assert stats(vendor)["finished"] == 4  # 3, then only b's job
    assert (out / "b.jpg").exists() and (out / "a.jpg").read_bytes() == a_bytes
    assert not list(out.glob("*.part"))


def test_a_refused_option_is_a_usage_error_and_nothing_is_enqueued(submit, vendor, photos, tmp_path):
    photo = tmp_path / "emp-1.jpg"
    photo.write_bytes(photos["coffee"])
    code, stdout, stderr = submit("process-image", str(photo), "-o", "fit=stretch", "--out", str(tmp_path))
    assert code == 2
    assert stderr.strip() == (
        "error: the API refused the request: invalid_options: option 'fit': must be one of contain, cover"
    )
    assert sum(stats(vendor).values()) == 0
    code, _, stderr = submit("process-image", str(photo), "--out", str(tmp_path), key="ik_wrong")
    assert code == 2 and "unauthorized" in stderr
    code, _, stderr = submit("process-image", str(tmp_path / "nope.jpg"), "--out", str(tmp_path))
    assert code == 2 and "nope.jpg: no such file" in stderr
    code, _, stderr = submit("process-image", str(photo), str(photo), "--out", str(tmp_path))
    assert code == 2 and "would both be saved as emp-1.*" in stderr


def test_the_command_reads_the_api_from_the_environment(vendor, photos, tmp_path, monkeypatch, capsys):
    """``python -m imgproc submit`` as a vendor runs it, its output a pipe: plain lines, no escapes."""
    photo = tmp_path / "emp 7.jpg"
    photo.write_bytes(photos["coffee"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
    env.update(IMGPROC_API_URL=vendor[0], IMGPROC_API_KEY=vendor[1])
    command = [sys.executable, "-m", "imgproc", "submit", "process-image", str(photo), "--out", "res"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"process-image: 1 photo to {vendor[0]}\n")
    assert "[uploads: 1/1] emp 7  finished" in done.stdout and "\x1b" not in done.stdout
    (saved,) = (tmp_path / "res").iterdir()
    assert saved.name == f"{safe_name('emp 7')}.jpg" and image(saved)[0] == (600, 400)

    # On a terminal: the live bar (rich), then the summary as a table.
    code, shown = _on_a_terminal([*command[:-1], "res-tty"], tmp_path, {**env, "TERM": "xterm-256color"})
    assert code == 0, shown
    assert "\x1b[" in shown and "uploads" in shown and "1/1" in shown and "1 finished in " in shown
    assert (tmp_path / "res-tty" / saved.name).read_bytes() == saved.read_bytes()

    monkeypatch.delenv("IMGPROC_API_KEY", raising=False)
    assert main(["submit", "process-image", str(photo), "--out", str(tmp_path / "res")]) == 2
    assert "no API key" in capsys.readouterr().err


def _on_a_terminal(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its stdout and stderr: (exit status, what it wrote)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    written = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command has closed the terminal
            break
        if not chunk:
            break
        written += chunk
    os.close(master)
    return proc.wait(timeout=60), written.decode(errors="replace")


def test_ctrl_c_stops_with_a_summary(vendor, photo_server, photos, tmp_path):
    """SIGINT while a job is still fetching its photo: exit 130, the record shown as interrupted."""
    photo_server.slow_drip("/slow.jpg", 600, chunk=100, interval=1.0)  # 5 s: ends before teardown
    env = dict(os.environ, IMGPROC_API_URL=vendor[0], IMGPROC_API_KEY=vendor[1])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgproc",
            "submit",
            "process-image",
            photo_server.url("/slow.jpg"),
            "--out",
            "r",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not photo_server.hits["/slow.jpg"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker fetches: the job is enqueued and running
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130, stderr
    (row,) = summary(stdout).values()
    assert row[0] == "interrupted" and "goes on on the server" in row[-1]
    assert "interrupted: --resume" in stderr and "Traceback" not in stderr


def test_remove_bg_bulks_are_cut_to_the_vendors_background_removal_limit(monkeypatch, capsys):
    """A bulk of 100 against 30 per hour was refused whole, and waited an hour before each new refusal."""
    import argparse

    from imgproc.tools.submit import _fit_bulks_to_the_limit

    limits = {"bg-removal": {"limit": "30 per 1 hour", "amount": 30, "remaining": 30, "reset_in": 0}}
    monkeypatch.setattr(Client, "limits", lambda self: limits)
    args = argparse.Namespace(api_url="http://127.0.0.1:9", api_key="ik_test", bulk_size=500)
    _fit_bulks_to_the_limit(args)
    assert args.bulk_size == 30 and "limit is 30 per 1 hour" in capsys.readouterr().out
    args.bulk_size = 20  # smaller already: kept
    _fit_bulks_to_the_limit(args)
    assert args.bulk_size == 20


#: The demo's face crops on one worker: the whole demo, lighter (its ISNet removals are 1.6-4 s each).
LIGHT_DEMO = ("--workers", "1", "--operations", "crop-face")


def test_demo_serve_prints_the_page_and_keys_and_stops_on_ctrl_c(tmp_path, redis_conn):
    """``imgproc demo --serve``: the demo (its face crops, on one worker), then the stack stays up.

    With ``REDIS_URL`` naming a shared Redis (the test's database), the demo still runs on a Redis of
    its own: none of its jobs, metrics or keys are left where ``imgproc queues`` or /metrics look.
    """
    env = {**os.environ, "REDIS_URL": REDIS_TEST_URL}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgproc", "demo", "--serve", "--var", str(tmp_path / "var"), *LIGHT_DEMO],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its API, worker and Redis in a group of their own, killed if it fails
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving until Ctrl-C"):
                break
        printed = "".join(lines)
        assert proc.poll() is None, printed
        page = re.findall(r"^the web page: (http://127\.0\.0\.1:\d+)/ui/ ", printed, re.M)
        demo_key = re.findall(r"vendor demo's key .*: +(ik_\S+)$", printed, re.M)
        operator_key = re.findall(r"operator's key .*: +(ik_\S+)$", printed, re.M)
        assert len(page) == 2 and len(set(page)) == 1 and demo_key and operator_key, (
            printed
        )  # at ready, at end
        api = page[0]
        examples = re.findall(r"read: export API=(\S+) KEY=(\S+) PHOTOS=(\S+)$", printed, re.M)
        assert examples and examples[0][:2] == (api, demo_key[0]), printed
        assert httpx.get(f"{examples[0][2]}/astronaut.jpg").content[:2] == b"\xff\xd8"
        assert redis_conn.dbsize() == 0, redis_conn.keys()  # REDIS_URL's Redis: the demo's jobs are elsewhere
        assert re.search(r"^\S+ +crop-face +coffee +failed .* no_face_found$", printed, re.M)

        assert httpx.get(f"{api}/health").status_code == 200
        web = httpx.get(f"{api}/ui/")
        assert web.status_code == 200
        stats = httpx.get(f"{api}/api/image-queue/queue-stats", headers={"X-API-Key": demo_key[0]})
        assert stats.status_code == 200
        assert stats.json()["vendors"]["demo"]["finished"] == 2  # coffee has no face
        as_operator = httpx.get(f"{api}/api/image-queue/queue-stats", headers={"X-API-Key": operator_key[0]})
        assert as_operator.status_code == 200 and "demo" in as_operator.json()["vendors"]
        assert image(tmp_path / "out" / "astronaut-crop-face.jpg")[0] == (300, 400)

        time.sleep(1)
        assert proc.poll() is None  # still serving
        stopped = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, rest
        # Well inside the grace period a service manager gives (a loaded machine takes seconds more).
        assert time.monotonic() - stopped < 30 and "stopped the API, the workers and the demo's Redis" in rest
        assert redis_conn.dbsize() == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{api}/health")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()  # a failed test's open pipe would surface later as another test's ResourceWarning


def test_crops_that_remove_the_background_are_cut_to_its_limit_too():
    """Issue 22 finding 4: such a crop counts against the background-removal limit, item by item."""
    from imgproc.tools.submit import _runs_matting

    assert _runs_matting("remove-bg", {"model": "a-model-only-the-server-has"})
    assert _runs_matting("crop-face", {"preset": "us-passport"})
    assert _runs_matting("crop-face", {"remove_background": True})
    assert not _runs_matting("crop-face", {"preset": "us-passport", "remove_background": False})
    assert not _runs_matting("crop-face", {}) and not _runs_matting("process-image", {})
