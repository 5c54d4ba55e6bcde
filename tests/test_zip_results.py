"""A zip result (remove-bg ``format: "zip"``: color.jpg + alpha.png) unpacked into one RGBA PNG, by the
Python client and by ``imgproc submit``, without a server: the zips are made here from a known cut-out."""

from __future__ import annotations

import argparse
import io
import sys
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from imgproc.client import Client, UnpackError, unpack_zip
from imgproc.client.models import Job
from imgproc.tools.cli import parser
from imgproc.tools.submit import Submitter
from imgproc.tools.submit_display import Display
from imgproc.tools.submit_records import UPLOADS, Record, existing_result


def cut_out(width: int = 96, height: int = 64) -> np.ndarray:
    """An RGBA cut-out: colour gradients, alpha from none (a left band, a hole) through an edge to full."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height)], -1)
    alpha = np.clip((x - 20) * 6, 0, 255)
    alpha[(x - 70) ** 2 + (y - 32) ** 2 < 100] = 0
    return np.dstack([rgb, alpha]).astype(np.uint8)


def as_zip(rgba: np.ndarray, bgcolor=(255, 255, 255), names=("color.jpg", "alpha.png")) -> bytes:
    """The zip the API makes of ``rgba``: its colours as a JPEG (quality 95, no chroma subsampling),
    ``bgcolor`` where alpha is 0, and its alpha as an 8-bit greyscale PNG."""
    colour = rgba[..., :3].copy()
    colour[rgba[..., 3] == 0] = bgcolor
    jpeg, png, out = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.fromarray(colour).save(jpeg, "JPEG", quality=95, subsampling=0)
    Image.fromarray(rgba[..., 3], "L").save(png, "PNG")
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(names[0], jpeg.getvalue())
        archive.writestr(names[1], png.getvalue())
    return out.getvalue()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.mode == "RGBA"
        return np.asarray(img)


def assert_is_the_cut_out(png: bytes, rgba: np.ndarray, zipped: bytes) -> None:
    """The alpha exactly the cut-out's; the colours where alpha > 0 the JPEG's, within its error of the
    cut-out's (measured for this image at quality 95, 4:4:4: at most 14, 0.67 on average)."""
    got = decoded(png)
    assert got.shape == rgba.shape
    assert np.array_equal(got[..., 3], rgba[..., 3])
    seen = rgba[..., 3] > 0
    with (
        zipfile.ZipFile(io.BytesIO(zipped)) as archive,
        Image.open(io.BytesIO(archive.read("color.jpg"))) as jpg,
    ):
        assert np.array_equal(got[..., :3][seen], np.asarray(jpg.convert("RGB"))[seen])  # nothing lost here
    error = np.abs(got[..., :3].astype(int) - rgba[..., :3])[seen]
    assert error.max() <= 16 and error.mean() < 1.5, (error.max(), error.mean())


def test_a_zip_unpacks_into_the_rgba_cut_out_it_was_made_of():
    rgba = cut_out()
    zipped = as_zip(rgba)
    assert_is_the_cut_out(unpack_zip(zipped), rgba, zipped)
    on_colour = as_zip(rgba, bgcolor=(0, 90, 200))  # bgcolor shows where alpha is 0 only
    assert np.array_equal(decoded(unpack_zip(on_colour))[..., 3], rgba[..., 3])


@pytest.mark.parametrize(
    "data, words",
    [
        (b"PK\x03\x04 not really", "not a zip file"),
        (as_zip(cut_out(), names=("color.jpg", "mask.png")), "the zip has no alpha.png"),
        (as_zip(cut_out(), names=("color.png", "alpha.png")), "the zip has no color.jpg"),
    ],
)
def test_a_zip_that_is_no_cut_out_is_refused_saying_why(data, words):
    with pytest.raises(UnpackError, match=words):
        unpack_zip(data)


def test_a_colour_and_an_alpha_of_two_sizes_are_refused():
    small, large = zipfile.ZipFile(io.BytesIO(as_zip(cut_out(40, 30)))), as_zip(cut_out())
    out = io.BytesIO()
    with small, zipfile.ZipFile(io.BytesIO(large)) as other, zipfile.ZipFile(out, "w") as mixed:
        mixed.writestr("color.jpg", small.read("color.jpg"))
        mixed.writestr("alpha.png", other.read("alpha.png"))
    with pytest.raises(UnpackError, match="color.jpg is 40x30, alpha.png 96x64"):
        unpack_zip(out.getvalue())


def test_without_pillow_the_error_says_what_to_install(monkeypatch):
    zipped = as_zip(cut_out())
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if it were not installed
    with pytest.raises(ImportError, match="needs Pillow: pip install pillow"):
        unpack_zip(zipped)


def test_the_client_downloads_a_result_without_its_key_and_unpacks_a_zip():
    rgba = cut_out()
    zipped = as_zip(rgba)
    files = {"/media/acme/j1/sku-1-bg.zip": zipped, "/media/acme/j2/sku-2-bg.png": b"\x89PNG not unpacked"}
    keys = []

    def answer(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("X-API-Key"))
        if request.url.path.startswith("/api/"):
            result = {"url": "/media/acme/j1/sku-1-bg.zip", "width": 96, "height": 64, "format": "zip"}
            result |= {
                "bytes": len(zipped),
                "confidence": 0.42,
                "review": True,
                "subject_box": [21, 0, 75, 64],
            }
            return httpx.Response(200, json={"job_id": "j1", "state": "finished", "result": result})
        data = files.get(request.url.path)
        return httpx.Response(200, content=data) if data else httpx.Response(404, json={})

    with Client("http://imgproc.test", "ik_test", transport=httpx.MockTransport(answer)) as client:
        result = client.job("j1").result
        assert (result.format, result.confidence, result.review) == ("zip", 0.42, True)
        assert result.subject_box == [21, 0, 75, 64] and "confidence" not in result.extra
        assert client.download(result) == zipped  # as it is, unless asked
        assert_is_the_cut_out(client.download(result, unpack=True), rgba, zipped)
        other = "http://imgproc.test/media/acme/j2/sku-2-bg.png"
        assert client.download(other, unpack=True) == files["/media/acme/j2/sku-2-bg.png"]  # not a zip
    assert keys == ["ik_test", None, None, None]  # the key went to the API only, never with a result


def _submitter(tmp_path, keep_zip: bool, served: bytes) -> Submitter:
    args = argparse.Namespace(operation="remove-bg", out=tmp_path, api_url="http://api.test", timeout=5)
    display = Display(Console(file=io.StringIO()))
    display.add(UPLOADS, 1)
    submitter = Submitter(None, args, {}, display, keep_zip)
    submitter.downloads.close()
    submitter.downloads = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=served))
    )
    return submitter


def _finish(submitter: Submitter, record: Record, size: int) -> None:
    result = {"url": "/media/acme/j/sku-1-bg.zip", "width": 96, "height": 64, "format": "zip", "bytes": size}
    try:
        submitter.finish(record, Job.of({"job_id": "j", "state": "finished", "result": result}), UPLOADS)
    finally:
        submitter.close()


def test_submit_unpacks_a_zip_result_into_an_rgba_png_beside_unless_keep_zip(tmp_path):
    rgba = cut_out()
    zipped = as_zip(rgba)
    unpacked, kept = tmp_path / "unpacked", tmp_path / "kept"
    for out, keep in ((unpacked, False), (kept, True)):
        out.mkdir()
        record = Record("sku-1", "sku-1.jpg", False, "sku-1")
        _finish(_submitter(out, keep, zipped), record, len(zipped))
        assert record.state == "finished" and not record.error
        assert [p.name for p in out.iterdir()] == [record.saved.name]  # no zip, no part file left
        assert existing_result(out, record) == record.saved  # --resume skips it
    assert (unpacked / "sku-1.png").is_file()
    assert_is_the_cut_out((unpacked / "sku-1.png").read_bytes(), rgba, zipped)
    assert (kept / "sku-1.zip").read_bytes() == zipped
    assert parser().parse_args(["submit", "remove-bg", "a.jpg", "--out", "x", "--keep-zip"]).keep_zip


def test_submit_keeps_a_zip_it_cannot_unpack_and_says_why(tmp_path):
    record = Record("sku-1", "sku-1.jpg", False, "sku-1")
    _finish(_submitter(tmp_path, False, b"PK\x03\x04 broken"), record, 14)
    assert record.state == "failed" and record.error.startswith("unpack_failed: not a zip file")
    assert [p.name for p in tmp_path.iterdir()] == ["sku-1.zip"]
