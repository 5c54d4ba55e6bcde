"""The documentation's examples, run as written against a real stack: The API, Python client, Live events.

A block of docs/api.md, docs/client.md or docs/events.md marked ``<!-- docs-test: NAME -->`` on the
line before its fence is run here, in that order, in a scratch folder whose ``.venv`` is the
checkout's, as a newcomer on a fresh machine runs it after "The API"'s set-up (the README sends
them there once the stack runs): the ``photos`` block serves the demo's photos with
``python -m http.server`` (its port 8081 swapped for a free one), a ``python worker.py`` on every
queue fetches from it with ``IMGPROC_FETCH_ALLOW_HOSTS=127.0.0.1:<port>`` as The API says, the
API runs under gunicorn on a port of its own, and the limits are the defaults. Every curl answer
must be a 2xx (a DELETE may answer 409, as The API says), the Python block must exit 0, and
every job the examples made must end ``finished``. One background removal (and the worker's
warm-up) is the whole model cost.
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

from imgproc.config import ROOT
from imgproc.jobtypes import QUEUES
from imgproc.queueing.keys import KEY_LIMIT

pytestmark = pytest.mark.timeout(300)

#: The pages holding the examples, in the order a newcomer reads them.
PAGES = ("docs/api.md", "docs/client.md", "docs/events.md")
#: The marked blocks, in that order: what each must hold.
BLOCKS = ("photos", "api", "client", "events")
MARKED = re.compile(
    r"^<!-- docs-test: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.M | re.S
)
#: Every curl of a block reports its answer in a file of its own (the examples' own output is left
#: alone): on the shared stderr, ``keep``'s tee of a body raced curl's line and split it now and then.
PRELUDE = """set -euo pipefail
curl() { command curl -w '%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n' "$@" 2>>"$CURL_ANSWERS"; }
"""


def example_blocks() -> dict[str, tuple[str, str]]:
    """The marked blocks by name: (language, code)."""
    text = "\n".join((ROOT / page).read_text() for page in PAGES)
    return {m["name"]: (m["lang"], m["body"]) for m in MARKED.finditer(text)}


def test_the_docs_mark_their_runnable_examples():
    blocks = example_blocks()
    assert tuple(blocks) == BLOCKS, "a marked example was removed or renamed: update BLOCKS"
    assert {lang for lang, _ in blocks.values()} == {"sh", "python"}
    for _, code in blocks.values():
        commands = "\n".join(line.split("#")[0] for line in code.splitlines())  # the answers shown aside
        assert "cdn.example.com" not in commands and "5f0c" not in commands  # nothing a fresh machine lacks


def run_sh(code: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> tuple[str, list[str]]:
    """The block under bash -e: its stdout and the curl answers' ``HTTP <status> <method> <url>`` lines."""
    log = cwd / "curl-answers.log"
    log.write_text("")
    done = subprocess.run(
        ["bash", "-c", PRELUDE + code],
        cwd=cwd,
        env={**env, "CURL_ANSWERS": str(log)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    answers = re.findall(r"^HTTP \d{3} [A-Z]+ \S+$", log.read_text(), re.M)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}\n{log.read_text()}"
    return done.stdout, answers


def check_answers(answers: list[str]) -> None:
    for line in answers:
        _, status, method, url = line.split(" ", 3)
        ok = status.startswith("2") or (method == "DELETE" and status == "409")
        assert ok, f"{line}\n" + "\n".join(answers)


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A scratch folder with The API's photo server running; a stack whose workers may fetch from it."""
    from imgproc.testing import LocalStack, free_port

    scratch = tmp_path_factory.mktemp("readme")
    (scratch / ".venv").symlink_to(ROOT / ".venv")
    var = scratch / "var"
    port = free_port()
    lang, photos = example_blocks()["photos"]
    assert lang == "sh" and "8081" in photos
    server = subprocess.Popen(
        ["bash", "-c", PRELUDE + photos.replace("8081", str(port))],
        cwd=scratch,
        start_new_session=True,  # the backgrounded server stays in this group: stopped with it
    )
    env = {
        "IMGPROC_DATABASE_URL": f"sqlite:///{var / 'imgproc.db'}",
        "IMGPROC_STORAGE_DIR": str(var / "media"),
        "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
    }
    try:
        assert server.wait(timeout=60) == 0
        photos_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{photos_url}/astronaut.jpg").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "The API's photo server did not answer"
            time.sleep(0.1)
        with LocalStack(var, env, own_redis=True) as stack:
            # As The API says: the workers, not the API, are allowed to fetch from the photo server.
            workers = stack.start_workers(1, QUEUES, IMGPROC_FETCH_ALLOW_HOSTS=f"127.0.0.1:{port}")
            stack.start_api(processes=1, threads=16, config=str(ROOT / "deploy" / "gunicorn.conf.py"))
            stack.wait_workers(workers, timeout=180)
            key = stack.add_vendor("acme")
            yield {
                "stack": stack,
                "workers": workers,
                "scratch": scratch,
                "env": {**os.environ, "API": stack.api, "KEY": key, "PHOTOS": photos_url},
                "key": key,
            }
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_the_api_client_and_events_examples_run_as_written(newcomer):
    blocks = example_blocks()
    stack, scratch, env = newcomer["stack"], newcomer["scratch"], newcomer["env"]

    out, answers = run_sh(blocks["api"][1], scratch, env)
    check_answers(answers)
    assert [a.split()[2] for a in answers].count("POST") == 3, answers
    assert (scratch / "photo.jpg").stat().st_size > 0
    deleted = next(a for a in answers if " DELETE " in a)

    script = scratch / "client_example.py"
    script.write_text(blocks["client"][1])
    done = subprocess.run(
        [sys.executable, script.name], cwd=scratch, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "invalid_options fit", done.stdout
    assert any(line.startswith("finished http") for line in lines), done.stdout  # the face crop
    assert {line.split()[0] for line in lines if " finished http" in line} >= {"astronaut", "two-people"}

    out, answers = run_sh(blocks["events"][1], scratch, env)
    check_answers(answers)
    states = re.findall(r'^data: \{.*?"state":\s*"(\w+)"', out, re.M)
    assert states and states[-1] == "finished", out

    # What the walk cost the vendor, before this test's own reads add to it (The API says ~20).
    conn = stack.redis()
    try:
        used = conn.zcard(KEY_LIMIT.format("global", "acme"))
    finally:
        conn.close()
    print(f"the examples used {used} of the vendor's 100 requests per 15 minutes")
    assert used <= 25

    # Every job the examples made ends finished (the one the DELETE cancelled, if it was still waiting).
    headers = {"X-API-Key": newcomer["key"]}
    deadline = time.monotonic() + 120
    while True:
        jobs = httpx.get(f"{stack.api}/api/image-queue/jobs?per_page=100", headers=headers).json()["jobs"]
        if all(j["state"] in ("finished", "failed", "canceled", "stopped") for j in jobs):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.5)
    states = sorted((j["type"], j["record_id"], j["state"]) for j in jobs)
    # The DELETE canceled a waiting job (200), or stopped a started one (202), or came too late (409).
    ended_by_delete = {"200": "canceled", "202": "stopped"}.get(deleted.split()[1])
    by_delete = [j for j in jobs if j["state"] in ("canceled", "stopped")]
    assert len(jobs) == 9 and [j["state"] for j in by_delete] == (
        [ended_by_delete] if ended_by_delete else []
    ), states
    assert all(j["state"] == "finished" for j in jobs if j not in by_delete), states


def test_a_cpu_worker_starts_without_a_word_about_gpus(newcomer):
    """No NVIDIA driver here: ``IMGPROC_DEVICE=auto`` on the CPU is no news (it warned on every start)."""
    from imgproc.processing.devices import _loadable

    if _loadable("libcuda.so.1"):
        pytest.skip("this machine has an NVIDIA driver: auto's warning is right here")
    (worker,) = newcomer["workers"]
    log = Path(worker.log_path).read_text()
    assert "ready in" in log and "no CUDA here" not in log and "imgproc[gpu]" not in log, log
