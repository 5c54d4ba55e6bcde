"""The web page in Chromium against the real stack: a vendor's uploads, a batch, hostile text, an operator."""

from __future__ import annotations

import io
import time
import zipfile

import httpx
import pytest

from .conftest import screenshot

API = "/api/image-queue"
HOSTILE = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.timeout(180)


def _api(stack, vendor: str) -> httpx.Client:
    return httpx.Client(base_url=stack["base"], headers={"X-API-Key": stack["keys"][vendor]}, timeout=30)


def _all_done(page, count: int, timeout: float = 60_000) -> None:
    """Wait until the first ``count`` rows have finished, their bars full, their thumbnails loaded."""
    page.wait_for_function(
        """count => {
            const rows = [...document.querySelectorAll("#job-rows tr[data-job-id]")].slice(0, count);
            return rows.length === count && rows.every(r => r.dataset.state === "finished"
                && r.querySelector("progress").value === 100
                && [...r.querySelectorAll("img.thumb")].every(i => i.complete && i.naturalWidth > 0));
        }""",
        arg=count,
        timeout=timeout,
    )


def test_a_vendor_uploads_two_photos_watches_them_finish_and_downloads_one(page_for, web_stack):
    page = page_for("acme")
    html = page.content()
    assert web_stack["keys"]["acme"] not in html and "Signed in as" in html
    assert web_stack["keys"]["acme"] not in page.url

    # The one model inference of these tests, first: while the worker is busy with it, the two
    # uploads wait in the queue, so their bars are seen below 100% before they fill.
    page.get_by_label("Operation").select_option("remove-bg")
    page.get_by_label("Or image URLs, one per line").fill(
        f"emp-0042,{web_stack['server'].url('/astronaut.jpg')}"
    )
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("1 job queued.").wait_for()

    page.get_by_label("Operation").select_option("process-image")
    page.get_by_label("Resize to").fill("320x320")
    page.locator("fieldset[data-for='process-image']").get_by_label("Format").select_option("png")
    files = web_stack["files"]
    page.locator("#files").set_input_files([files / "astronaut.jpg", files / "coffee.jpg"])
    page.evaluate("() => { window.notReloaded = true; }")  # gone if the page reloads
    # The bars move as events arrive: sample each row's record and progress every 50 ms.
    page.evaluate(
        """() => {
            window.sample = () => [...document.querySelectorAll("#job-rows tr[data-job-id]")].map(
                r => r.querySelector("td.record span").textContent + ":" + r.querySelector("progress").value
            ).join(" ");
            window.seen = [];
            setInterval(() => window.seen.push(window.sample()), 50);
        }"""
    )
    started = time.monotonic()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("2 jobs queued.").wait_for()
    _all_done(page, 3, timeout=90_000)
    elapsed = time.monotonic() - started
    assert page.evaluate("window.notReloaded") is True
    # The last sample of the 50 ms timer may predate the last event: take one more now.
    seen = [*page.evaluate("window.seen"), page.evaluate("window.sample()")]
    waiting = [s for s in seen if "astronaut:0" in s and "coffee:0" in s]
    assert waiting and "astronaut:100" in seen[-1] and "coffee:100" in seen[-1], (seen[:3], seen[-1:])
    rows = page.locator("#job-rows tr[data-job-id]")
    assert sorted(rows.nth(i).locator("td.record").inner_text() for i in range(2)) == ["astronaut", "coffee"]
    last = rows.nth(2)
    assert last.locator("td.record").inner_text() == "emp-0042"
    assert last.locator("img.thumb.checker").get_attribute("src").endswith("-bg.png")  # on the checkerboard
    print(f"a background removal and two uploads finished in the page {elapsed:.1f}s after the uploads")
    screenshot(page, "vendor")

    row = rows.first
    job_id = row.get_attribute("data-job-id")
    with page.expect_download() as caught:
        row.get_by_role("link", name="Download").click()
    downloaded = caught.value.path().read_bytes()
    with _api(web_stack, "acme") as api:
        result = api.get(f"{API}/job/{job_id}").json()["result"]
        assert downloaded == api.get(result["url"]).content
    assert downloaded[:8] == b"\x89PNG\r\n\x1a\n" and caught.value.suggested_filename.endswith("-img.png")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    _all_done(page, 3)
    page.locator("#jobs-title").scroll_into_view_if_needed()
    screenshot(page, "vendor-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone


def test_a_batch_of_urls_has_one_live_bar_and_downloads_as_a_zip(page_for, web_stack):
    page = page_for("acme")
    server = web_stack["server"]
    page.get_by_label("Operation").select_option("process-image")
    page.get_by_label("Resize to").fill("64x64")
    page.get_by_label("Or image URLs, one per line").fill(
        f"emp-1,{server.url('/astronaut.jpg')}\nemp-2,{server.url('/two-people.jpg')}"
    )
    page.get_by_role("button", name="Submit").click()
    page.get_by_role("link", name="Follow the batch").click()
    page.wait_for_function("() => document.getElementById('batch-progress').value === 100", timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('#counts [data-state=finished] dd').textContent === '2'"
    )
    assert page.locator("#batch-rows .state-finished").count() == 2
    with page.expect_download() as caught:
        page.get_by_role("link", name="Download all (zip)").click()
    with zipfile.ZipFile(io.BytesIO(caught.value.path().read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["emp-1-img.jpg", "emp-2-img.jpg"]
        assert all(archive.read(name)[:2] == b"\xff\xd8" for name in archive.namelist())
    screenshot(page, "batch")


def test_a_hostile_record_id_shows_as_text_and_runs_nothing(page_for, web_stack):
    page = page_for("acme")
    # Belt and braces beside the dialog hook of page_for: an alert() would set this.
    page.evaluate("() => { window.alert = () => { window.alerted = true; }; }")
    page.get_by_label("Operation").select_option("process-image")
    page.get_by_label("Or image URLs, one per line").fill(f"{HOSTILE},{web_stack['server'].url('/gone.jpg')}")
    page.get_by_role("button", name="Submit").click()
    cell = page.locator("#job-rows td.record span", has_text=HOSTILE)
    cell.first.wait_for()
    assert cell.first.is_visible() and cell.first.inner_text() == HOSTILE
    page.wait_for_function(
        "() => document.querySelector('#job-rows tr[data-job-id]').dataset.state === 'failed'", timeout=30_000
    )
    assert page.locator("#job-rows td.record img").count() == 0
    assert page.locator("img[src='x']").count() == 0
    error = page.locator("#job-rows tr[data-job-id]").first.locator(".error")
    assert "fetch_failed" in error.inner_text() and "could not be downloaded" in error.inner_text()
    page.wait_for_timeout(300)
    assert page.evaluate("window.alerted") is None


def test_an_operator_sees_a_failed_job_and_retries_it(page_for, web_stack):
    with _api(web_stack, "acme") as api:
        url = web_stack["server"].url("/later.jpg")
        job_id = api.post(
            f"{API}/process-image-queue", json={"record_id": "late-photo", "image_url": url}
        ).json()["job_id"]
        deadline = time.monotonic() + 30
        while api.get(f"{API}/job/{job_id}").json()["state"] != "failed":
            assert time.monotonic() < deadline, "the job did not fail"
            time.sleep(0.1)
        web_stack["routes"]["/later.jpg"] = web_stack["photos"]["coffee"]  # the photo is there now

        page = page_for("ops")
        page.get_by_role("link", name="Operator").click()
        row = page.locator(f"#failed-rows tr[data-job-id='{job_id}']")
        row.wait_for()
        assert "acme" in row.inner_text() and "late-photo" in row.inner_text()
        assert "fetch_failed" in row.inner_text()
        page.locator("#worker-rows tr").first.wait_for()
        assert "bg-removal, image-processing" in page.locator("#worker-rows").inner_text()
        page.wait_for_function("() => document.querySelector('#usage-rows').textContent.includes('acme')")
        screenshot(page, "operator")
        row.get_by_role("button", name="Retry").click()
        page.get_by_text("Retrying acme's job late-photo.").wait_for()
        deadline = time.monotonic() + 30
        while (state := api.get(f"{API}/job/{job_id}").json()["state"]) != "finished":
            assert time.monotonic() < deadline, f"the retried job is {state}"
            time.sleep(0.1)
        row.wait_for(state="detached")


def test_signing_in_and_submitting_with_the_keyboard_alone(browser, web_stack):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=web_stack["base"])
    try:
        page = context.new_page()
        page.goto("/ui/")
        # The key field has the focus: Chromium applies autofocus at a later frame than the load.
        page.wait_for_function("() => document.activeElement && document.activeElement.id === 'api_key'")
        page.keyboard.type(web_stack["keys"]["acme"])
        page.keyboard.press("Enter")
        page.get_by_text("Signed in as").wait_for()
        page.get_by_label("Or image URLs, one per line").focus()
        page.keyboard.type(f"kbd-1,{web_stack['server'].url('/coffee.jpg')}")
        page.get_by_label("Operation").focus()
        page.keyboard.press("End")  # the last operation: resize and convert
        names = []
        for _ in range(40):  # Tab until the Submit button, every stop a real control
            page.keyboard.press("Tab")
            names.append(page.evaluate("() => document.activeElement.tagName"))
            if page.evaluate("() => document.activeElement.id") == "submit-button":
                break
        assert names[-1] == "BUTTON"
        assert set(names) <= {"INPUT", "SELECT", "TEXTAREA", "BUTTON", "A", "SUMMARY"}  # More options
        page.keyboard.press("Enter")
        page.get_by_text("1 job queued.").wait_for()
        record = page.locator("#job-rows tr[data-job-id]", has=page.locator("td.record", has_text="kbd-1"))
        record.wait_for()
        assert record.locator("td").nth(1).inner_text() == "Resize and convert"
    finally:
        context.close()


def test_the_form_is_the_tables_and_sends_what_its_fields_say(page_for, web_stack):
    """The fieldsets are drawn from the job types' schemas: bounds, defaults, a preset's options.

    The crop's enqueue is answered here (its body kept), so no face-crop worker is needed.
    """
    import json

    from imgproc.jobtypes import JOB_TYPES
    from imgproc.optiontypes import MAX_SIDE

    page = page_for("acme")
    operations = page.locator("#operation option")
    assert operations.all_inner_texts() == [jt.title for jt in JOB_TYPES.values()]
    removal = page.locator("fieldset[data-for='remove-bg']")
    assert removal.get_by_label("Longest side (px)").get_attribute("max") == str(MAX_SIDE)  # was 8000
    crop = page.locator("fieldset[data-for='crop-face']")
    assert crop.get_by_label("Output size").get_attribute("data-max") == str(MAX_SIDE)

    sent = []

    def enqueue(route):
        sent.append(route.request.post_data_json)
        route.fulfill(status=202, content_type="application/json", body=json.dumps({"job_id": "c" * 32}))

    page.route("**/api/image-queue/" + JOB_TYPES["crop-face"].single_endpoint, enqueue)
    page.get_by_label("Operation").select_option("crop-face")
    urls = page.get_by_label("Or image URLs, one per line")
    url = f"emp-7,{web_stack['server'].url('/astronaut.jpg')}"
    urls.fill(url)
    crop.get_by_label("Output size").fill(f"{MAX_SIDE + 1}x400")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text(f"Output size: each side from 1 to {MAX_SIDE}.").wait_for()
    assert sent == []  # refused on the page, nothing sent

    crop.get_by_label("Output size").fill("300 x 400")
    crop.get_by_label("Also remove the background").check()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("1 job queued.").wait_for()
    # Only what the fields say: the empty aspect, face height and file size are left to the API.
    assert sent[-1]["options"] == {
        "size": [300, 400],
        "format": "jpg",
        "bgcolor": "#ffffff",
        "remove_background": True,
        "select": "largest",
        "upscale": True,
        "sheet": False,
    }

    crop.locator("summary", has_text="More options").click()
    crop.get_by_label("ID-photo preset").select_option("icao-35x45")
    crop.get_by_label("Largest file (KB)").fill("240")
    urls.fill(url)  # a submitted list is cleared
    page.get_by_role("button", name="Submit").click()
    for _ in range(100):  # the route's handler runs while Playwright waits
        if len(sent) == 2:
            break
        page.wait_for_timeout(50)
    assert len(sent) == 2
    # A preset sets the shape, background and format: the fields for those stay behind, the rest go.
    assert sent[-1]["options"] == {
        "preset": "icao-35x45",
        "remove_background": True,
        "select": "largest",
        "upscale": True,
        "max_kb": 240,
        "sheet": False,
    }
    screenshot(page, "vendor-crop-options")


def test_a_failed_jobs_error_is_said_once_and_a_past_upload_is_named(page_for, web_stack):
    """The demo's coffee crop read "no face was found in the photo" twice; an upload was a grey box.

    The vendor's listing is answered here (a failed face crop of an upload, as the page meets it after
    a reload, when its own copy of the photo is gone), so no face-crop worker is needed.
    """
    import json

    failed = {
        "job_id": "f" * 32,
        "type": "crop-face",
        "record_id": "coffee",
        "state": "failed",
        "stage": "inference",
        "progress": 30,
        "attempts": 1,
        "max_attempts": 3,
        "created_at": "2026-12-01T08:00:00.000Z",
        "started_at": "2026-12-01T08:00:00.100Z",
        "ended_at": "2026-12-01T08:00:00.200Z",
        "result": None,
        "error": {"code": "no_face_found", "message": "no face was found in the photo", "retryable": False},
        "queue": "face-crop",
        "image_url": None,
        "upload": True,
    }
    listing = {"jobs": [failed], "page": 1, "per_page": 10, "total": 1, "pages": 1}
    page = page_for("acme")
    page.route(
        "**/api/image-queue/jobs?*",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(listing)),
    )
    page.reload()
    row = page.locator(f"#job-rows tr[data-job-id='{failed['job_id']}']")
    row.wait_for()
    text = row.inner_text()
    assert text.lower().count("no face was found") == 1, text
    assert "no_face_found" in text and "nothing to crop to" in text
    images = row.locator("td.images")
    assert images.locator(".thumb-note").inner_text() == "uploaded file"
    assert images.locator(".thumb.empty").count() == 1  # the result only: "—"
    # A message that says more than the sentence is still shown.
    detail = page.evaluate(
        "() => imgproc.errorDetail({code: 'fetch_failed', message: 'HTTP 404 from 127.0.0.1'})"
    )
    assert detail == "HTTP 404 from 127.0.0.1"
    screenshot(page, "vendor-failed-upload")


def test_remove_bg_offers_the_cut_out_options_and_a_doubtful_result_is_marked_for_review(
    page_for, web_stack, settings
):
    """Cut-outs to a spec: the layout's fields send what the API accepts, a marketplace preset takes
    over the fields it sets, and a result with ``review: true`` shows its badge and its compliance.

    The enqueue and the listing are answered here (no model runs): the options sent are checked with
    the API's own ``validate``, the listing is two finished removals as the worker reports them.
    """
    import json

    from PIL import Image

    from imgproc.api.options import validate
    from imgproc.jobtypes import JOB_TYPES
    from imgproc.presets import MARKETPLACES

    page = page_for("acme")
    sent = []

    def enqueue(route):
        sent.append(route.request.post_data_json["options"])
        route.fulfill(status=202, content_type="application/json", body=json.dumps({"job_id": "r" * 32}))

    page.route("**/api/image-queue/" + JOB_TYPES["remove-bg"].single_endpoint, enqueue)
    page.get_by_label("Operation").select_option("remove-bg")
    removal = page.locator("fieldset[data-for='remove-bg']")
    preset = removal.get_by_label("Marketplace preset")
    assert MARKETPLACES["amazon-main"].title in preset.locator("option").all_inner_texts()
    removal.get_by_label("Crop to the subject").check()
    removal.get_by_label("Margin around the subject").fill("5%")
    removal.get_by_label("Canvas (output size)").fill("1200x1200")
    removal.get_by_label("Subject's size, of the canvas").fill("85%")
    removal.get_by_label("Soft shadow under the subject").check()
    removal.locator("summary", has_text="More options").click()
    removal.get_by_label("Place on the canvas").fill("50% 100%")
    assert removal.get_by_label("Background photo URL").get_attribute("type") == "url"
    screenshot(removal, "vendor-remove-bg-options")
    urls = page.get_by_label("Or image URLs, one per line")
    url = f"sku-1,{web_stack['server'].url('/coffee.jpg')}"
    urls.fill(url)
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("1 job queued.").wait_for()
    model = removal.get_by_label("Model").input_value()
    assert sent[-1] == {
        "model": model,
        "format": "png",
        "crop_margin": "5%",
        "canvas": [1200, 1200],
        "scale": "85%",
        "crop": True,
        "shadow": True,
        "position": "50% 100%",
        "keep_alpha": "never",
        "channels": "rgba",
        "alpha_matting": False,
        "post_process_mask": False,
    }
    checked = validate("remove-bg", sent[-1], settings)  # what the API makes of them
    assert (checked["canvas"], checked["scale"], checked["crop_margin"]) == (
        [1200, 1200],
        0.85,
        "5% 5% 5% 5%",
    )

    # A preset: the fields it sets are greyed out and stay behind; the crop it sets is ticked.
    removal.get_by_label("Crop to the subject").uncheck()
    preset.select_option("amazon-main")
    assert removal.get_by_label("Crop to the subject").is_checked()
    assert removal.get_by_label("Canvas (output size)").is_disabled()
    assert not removal.get_by_label("Margin around the subject").is_disabled()
    urls.fill(url)
    page.get_by_role("button", name="Submit").click()
    for _ in range(100):  # the route's handler runs while Playwright waits
        if len(sent) == 2:
            break
        page.wait_for_timeout(50)
    assert sent[-1] == {
        "preset": "amazon-main",
        "model": model,
        "crop_margin": "5%",
        "crop": True,
        "shadow": True,
        "keep_alpha": "never",
        "channels": "rgba",
        "alpha_matting": False,
        "post_process_mask": False,
    }
    checked = validate("remove-bg", sent[-1], settings)
    assert checked["canvas"] == list(MARKETPLACES["amazon-main"].canvas) and checked["format"] == "jpg"

    # Two finished removals: one the worker doubts (its record id hostile text), one it is sure of.
    thumb = io.BytesIO()
    Image.new("RGBA", (56, 56), (200, 60, 40, 255)).save(thumb, "PNG")
    page.route(
        "**/media/acme/*",
        lambda route: route.fulfill(status=200, content_type="image/png", body=thumb.getvalue()),
    )

    def finished(job_id: str, record_id: str, confidence: float, failed: bool) -> dict:
        fill = {"name": "fill_ratio", "value": 0.71 if failed else 0.9, "min": 0.85, "pass": not failed}
        if failed:
            fill["reason"] = "the subject fills too little of the frame"
        side = {"name": "longest_side_px", "value": 2000, "min": 1000, "max": 10000, "pass": True}
        return {
            "job_id": job_id,
            "type": "remove-bg",
            "record_id": record_id,
            "state": "finished",
            "stage": "finished",
            "progress": 100,
            "attempts": 1,
            "max_attempts": 3,
            "created_at": "2026-12-01T08:00:00.000Z",
            "started_at": "2026-12-01T08:00:00.100Z",
            "ended_at": "2026-12-01T08:00:01.100Z",
            "result": {
                "url": f"/media/acme/{job_id}-bg.jpg",
                "width": 2000,
                "height": 2000,
                "format": "jpg",
                "bytes": 180_000,
                "duration_ms": 1000,
                "subject_box": [100, 100, 1800, 1800],
                "confidence": confidence,
                "review": confidence < 0.5,
                "compliance": {
                    "preset": "amazon-main",
                    "compliant": not failed,
                    "checks": [fill, side],
                    "failed": ["fill_ratio"] if failed else [],
                },
            },
            "error": None,
            "queue": "bg-removal",
            "image_url": web_stack["server"].url("/coffee.jpg"),
            "upload": False,
        }

    doubtful, sure = finished("d" * 32, HOSTILE, 0.42, True), finished("e" * 32, "sku-2", 0.93, False)
    listing = {"jobs": [doubtful, sure], "page": 1, "per_page": 10, "total": 2, "pages": 1}
    page.evaluate("() => { window.alert = () => { window.alerted = true; }; }")
    page.route(
        "**/api/image-queue/jobs?*",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(listing)),
    )
    page.get_by_role("button", name="Refresh").click()
    row = page.locator(f"#job-rows tr[data-job-id='{doubtful['job_id']}']")
    row.wait_for()
    badge = row.locator(".badge.review")
    assert badge.is_visible() and badge.inner_text() == "Review · 0.42"
    assert (
        row.locator("td.record span").first.inner_text() == HOSTILE
        and page.locator("img[src='x']").count() == 0
    )
    report = row.locator("details.compliance")
    assert report.locator("summary").inner_text() == "amazon-main: not compliant: fill_ratio"
    report.locator("summary").click()
    failed = report.locator("li.fail")
    assert failed.count() == 1 and "fill_ratio: 0.71 (at least 0.85)" in failed.inner_text()
    assert "too little of the frame" in failed.inner_text()
    other = page.locator(f"#job-rows tr[data-job-id='{sure['job_id']}']")
    assert other.locator(".badge.review").count() == 0
    assert other.locator("details.compliance summary").inner_text() == "amazon-main: compliant"
    _all_done(page, 2)
    screenshot(page, "vendor-review")
    assert page.evaluate("window.alerted") is None


def test_an_operator_adds_a_vendor_rotates_its_key_and_reads_usage_and_the_audit_log(page_for, web_stack):
    with _api(web_stack, "acme") as api:  # a job of acme's today, for the usage chart
        job_id = api.post(
            f"{API}/process-image-queue",
            json={"record_id": "chart", "image_url": web_stack["server"].url("/coffee.jpg")},
        ).json()["job_id"]
        deadline = time.monotonic() + 30
        while api.get(f"{API}/job/{job_id}").json()["state"] != "finished":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.1)
    page = page_for("ops")
    page.get_by_role("link", name="Operator").click()
    page.get_by_label("New vendor").fill(f"new-{HOSTILE[:0]}globex")
    page.get_by_role("button", name="Add").click()
    key_box = page.locator("#vendor-key")
    key_box.wait_for()
    key = key_box.locator("code").inner_text()
    assert "globex" in key_box.inner_text() and len(key) > 20
    with httpx.Client(base_url=web_stack["base"], headers={"X-API-Key": key}, timeout=30) as globex:
        assert globex.get(f"{API}/limits").status_code == 200  # the key shown works
    row = page.locator("#vendor-rows tr[data-vendor='new-globex']")
    row.wait_for()
    rotate = row.get_by_role("button", name="Rotate key")
    rotate.click()
    row.get_by_role("button", name="Replace new-globex's key? Click again").click()
    page.get_by_text("new-globex's key was replaced").wait_for()
    assert page.locator("#vendor-key code").inner_text() != key
    # The usage chart: a bar of acme's today, drawn as SVG by the page itself.
    bar = page.locator("#usage-chart svg rect[data-vendor='acme']")
    bar.first.wait_for()
    assert "acme" in page.locator("#usage-chart .legend").inner_text()
    # The audit log: both actions, newest first, by the operator key's vendor.
    page.wait_for_function("() => document.querySelectorAll('#audit-rows tr').length >= 2")
    audit = page.locator("#audit-rows tr")
    assert "key.rotate" in audit.nth(0).inner_text() and "vendor:new-globex" in audit.nth(0).inner_text()
    assert "vendor.add" in audit.nth(1).inner_text() and "ops" in audit.nth(1).inner_text()
    screenshot(page, "operator-controls", full_page=True)


def test_an_operator_makes_a_plan_puts_a_vendor_on_it_and_disables_it(page_for, web_stack):
    page = page_for("ops")
    page.get_by_role("link", name="Operator").click()
    form = page.locator("#plan-form")
    form.get_by_label("Name").fill("gold")
    form.get_by_label("Bulks").fill("5 per hour")
    form.get_by_label("Weight").fill("3")
    form.get_by_label("Bulk items").fill("7")
    form.get_by_role("button", name="Save plan").click()
    page.locator("#plan-rows tr[data-plan='gold']").wait_for()
    assert "5 per hour" in page.locator("#plan-rows tr[data-plan='gold']").inner_text()
    row = page.locator("#vendor-rows tr[data-vendor='acme']")
    row.get_by_label("Plan of acme").select_option("gold")
    page.get_by_text("acme is on plan gold").wait_for()
    with _api(web_stack, "acme") as api:
        deadline = time.monotonic() + 5  # the plan reaches the API within 5 s
        while api.get(f"{API}/limits").json()["limits"]["bulk"]["limit"] != "5 per 1 hour":
            assert time.monotonic() < deadline, api.get(f"{API}/limits").json()
            time.sleep(0.1)
        items = [{"record_id": f"r{i}", "image_url": "http://127.0.0.1:9/a.jpg"} for i in range(8)]
        assert api.post(f"{API}/bulk-process-image", json={"items": items}).status_code == 413  # gold: 7
        row.get_by_role("button", name="Disable").click()
        row.get_by_role("button", name="Refuse acme's keys? Click again").click()
        page.get_by_text("acme is disabled").wait_for()
        deadline = time.monotonic() + 5
        while (answer := api.get(f"{API}/limits")).status_code != 403:
            assert time.monotonic() < deadline, answer.json()
            time.sleep(0.1)
        assert answer.json()["error"]["code"] == "vendor_disabled"
        page.locator("#vendor-rows tr[data-vendor='acme'][data-disabled='yes']").get_by_role(
            "button", name="Enable"
        ).click()
        page.get_by_text("acme is enabled").wait_for()
        deadline = time.monotonic() + 5
        while api.get(f"{API}/limits").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    row.get_by_label("Plan of acme").select_option("")  # back to the default plan, for the other tests
    page.get_by_text("acme is on plan default").wait_for()
    screenshot(page, "operator-plans", full_page=True)


def test_an_operator_pauses_a_queue_and_a_vendor_from_the_page(page_for, web_stack):
    page = page_for("ops")
    page.get_by_role("link", name="Operator").click()
    queue = page.locator("#queue-rows tr[data-queue='image-processing']")
    queue.get_by_role("button", name="Pause").click()
    page.get_by_text("Queue image-processing paused").wait_for()
    page.locator("#queue-rows tr[data-queue='image-processing'][data-paused='yes']").wait_for()
    with _api(web_stack, "acme") as api:
        url = web_stack["server"].url("/coffee.jpg")
        answer = api.post(f"{API}/process-image-queue", json={"record_id": "held", "image_url": url})
        assert answer.status_code == 202  # accepted while paused
        job_id = answer.json()["job_id"]
        time.sleep(1.0)  # a worker listens on image-processing: it must not take the job
        assert api.get(f"{API}/job/{job_id}").json()["state"] == "paused"
        page.locator("#queue-rows tr[data-queue='image-processing']").get_by_role(
            "button", name="Resume"
        ).click()
        page.get_by_text("Queue image-processing resumed").wait_for()
        deadline = time.monotonic() + 30
        while api.get(f"{API}/job/{job_id}").json()["state"] != "finished":
            assert time.monotonic() < deadline, "the job did not run after the resume"
            time.sleep(0.1)
    vendor = page.locator("#vendor-rows tr[data-vendor='acme']")
    vendor.get_by_role("button", name="Pause").click()
    page.get_by_text("Vendor acme paused").wait_for()
    page.locator("#vendor-rows tr[data-vendor='acme'] .badge.state-paused").wait_for()
    screenshot(page, "operator-paused", full_page=True)
    page.locator("#vendor-rows tr[data-vendor='acme']").get_by_role("button", name="Resume").click()
    page.get_by_text("Vendor acme resumed").wait_for()
    page.wait_for_function(
        "() => document.querySelector('#audit-rows').textContent.includes('vendor.resume')"
    )


def test_an_operator_stops_a_running_job_from_the_workers_table(page_for, web_stack):
    # A 12 s fetch: longer than the workers table's refresh (3 s) and the click after it.
    web_stack["server"].slow_drip("/slow.jpg", total_bytes=1200, chunk=10, interval=0.1)
    page = page_for("ops")
    page.get_by_role("link", name="Operator").click()
    with _api(web_stack, "acme") as api:
        url = web_stack["server"].url("/slow.jpg")
        job_id = api.post(f"{API}/process-image-queue", json={"record_id": "slow", "image_url": url}).json()[
            "job_id"
        ]
        stop = page.locator("#worker-rows").get_by_role("button", name="Stop")
        stop.wait_for(timeout=10_000)  # the table refreshes every 3 s
        stop.click()
        page.get_by_text(f"Stopping job {job_id[:12]}").wait_for()
        deadline = time.monotonic() + 30
        while (state := api.get(f"{API}/job/{job_id}").json()["state"]) != "stopped":
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert api.get(f"{API}/job/{job_id}").json()["result"] is None


def test_an_operator_finds_jobs_by_filter_and_retries_every_match(page_for, web_stack):
    web_stack["routes"]["/broken.jpg"] = b"not a photo"
    with _api(web_stack, "acme") as api:
        items = [
            {"record_id": f"find-{i}", "image_url": web_stack["server"].url("/broken.jpg")} for i in range(3)
        ]
        ids = api.post(f"{API}/bulk-process-image", json={"items": items}).json()["job_ids"]
        deadline = time.monotonic() + 30
        while any(api.get(f"{API}/job/{i}").json()["state"] != "failed" for i in ids):
            assert time.monotonic() < deadline, "the jobs did not fail"
            time.sleep(0.2)
        web_stack["routes"]["/broken.jpg"] = web_stack["photos"]["coffee"]  # retried, they can finish
        page = page_for("ops")
        page.get_by_role("link", name="Operator").click()
        search = page.locator("#search-form")
        search.get_by_label("Record id, or a prefix*").fill("find-*")
        search.get_by_label("Job state").select_option("failed")
        search.get_by_role("button", name="Search").click()
        page.wait_for_function("() => document.querySelectorAll('#search-rows tr[data-job-id]').length === 3")
        assert "acme" in page.locator("#search-rows").inner_text()
        search.get_by_role("button", name="Retry matching").click()
        search.get_by_role("button", name="Retry 3 jobs? Click again").click()
        page.get_by_text("Retrying 3 jobs").wait_for()
        deadline = time.monotonic() + 60
        while any(api.get(f"{API}/job/{i}").json()["state"] != "finished" for i in ids):
            assert time.monotonic() < deadline, "the retried jobs did not finish"
            time.sleep(0.2)
    page.wait_for_function("() => document.querySelector('#audit-rows').textContent.includes('jobs.retry')")
    screenshot(page, "operator-search", full_page=True)


def test_a_vendor_finds_its_own_jobs_and_cancels_the_waiting_ones(page_for, web_stack):
    with _api(web_stack, "ops") as ops, _api(web_stack, "acme") as api:
        ops.post(f"{API}/pause", json={"vendor": "acme"})  # acme's jobs wait, to be canceled
        try:
            url = web_stack["server"].url("/coffee.jpg")
            items = [{"record_id": f"wait-{i}", "image_url": url} for i in range(2)]
            ids = api.post(f"{API}/bulk-process-image", json={"items": items}).json()["job_ids"]
            page = page_for("acme")
            search = page.locator("#search-form")
            assert search.get_by_label("Vendor").count() == 0  # an operator's filter only
            search.get_by_label("Record id, or a prefix*").fill("wait-*")
            search.get_by_role("button", name="Search").click()
            page.wait_for_function(
                "() => document.querySelectorAll('#search-rows tr[data-job-id]').length === 2"
            )
            search.get_by_role("button", name="Cancel matching").click()
            search.get_by_role("button", name="Cancel 2 jobs? Click again").click()
            page.get_by_text("Canceled 2 jobs").wait_for()
            assert {api.get(f"{API}/job/{i}").json()["state"] for i in ids} == {"canceled"}
        finally:
            ops.post(f"{API}/resume", json={"vendor": "acme"})
