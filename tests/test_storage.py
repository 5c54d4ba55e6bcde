"""Storage: local files, and Cloudinary through the real SDK against a local stub."""

from __future__ import annotations

import io
import re
import urllib.request

import cloudinary
import pytest
from PIL import Image

from imgproc.adapters.storage import (
    CloudinaryStorage,
    LocalStorage,
    make_storage,
    parse_cloudinary_url,
)
from imgproc.errors import PermanentError, TransientError
from tests.cloudinary_stub import CloudinaryStub


def png(color=(200, 30, 30, 255), size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, "PNG")
    return out.getvalue()


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read()


def chain_text(exc: BaseException) -> str:
    """Everything an error and the exceptions behind it would show in a log."""
    seen, parts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


BAD_KEYS = [
    "",
    "/abs.png",
    "../up.png",
    "a/../b.png",
    "a/./b.png",
    "..",
    "a//b.png",
    "dir/",
    "a b.png",
    "a\\b.png",
    "caf\u00e9.png",
    "q?.png",
    "x%2e.png",
]


# --- LocalStorage -----------------------------------------------------------


@pytest.fixture
def local(tmp_path):
    return LocalStorage(str(tmp_path / "media"))


def test_local_put_writes_file_and_returns_media_url(local, tmp_path):
    data = png()
    url = local.put("jobs/j1/result.png", data, "image/png")
    assert url == "/media/jobs/j1/result.png"  # relative to the API, which makes it absolute when it answers
    assert local.local_path("jobs/j1/result.png") == tmp_path / "media" / "jobs" / "j1" / "result.png"
    assert local.local_path("jobs/j1/result.png").read_bytes() == data


def test_local_url_of_only_for_stored_keys(local):
    assert local.url_of("jobs/j2/result.png") is None
    url = local.put("jobs/j2/result.png", png(), "image/png")
    assert local.url_of("jobs/j2/result.png") == url


def test_local_put_overwrites_and_leaves_no_temporary_files(local):
    local.put("jobs/j3/result.png", b"first", "image/png")
    url = local.put("jobs/j3/result.png", b"second", "image/png")
    path = local.local_path("jobs/j3/result.png")
    assert path.read_bytes() == b"second"
    assert url == local.url_of("jobs/j3/result.png")
    assert [p.name for p in path.parent.iterdir()] == ["result.png"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_rejects_bad_keys(local, key, tmp_path):
    with pytest.raises(ValueError):
        local.put(key, b"x", "image/png")
    with pytest.raises(ValueError):
        local.url_of(key)
    with pytest.raises(ValueError):
        local.local_path(key)
    assert not (tmp_path / "up.png").exists()


def test_each_storage_says_where_its_files_are_and_whether_it_deletes_them(local, tmp_path):
    """What the API's /media/ and zips, and a vendor's purge, ask of any storage (no probing for methods)."""
    for job in ("j1", "j2"):
        local.put(f"acme/{job}/result.png", png(), "image/png")
    assert local.local_path("acme/j1/result.png").read_bytes() == png()
    assert local.delete_folder("acme") == 2 and not (tmp_path / "media" / "acme").exists()
    remote = storage_for("cloudinary://k:s@c")
    assert remote.local_path("acme/j1/result.png") is None and remote.delete_folder("acme") is None
    with pytest.raises(ValueError):
        remote.local_path("../up.png")


def test_local_write_failure_is_transient(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    storage = LocalStorage(str(blocker))
    with pytest.raises(TransientError) as info:
        storage.put("jobs/j4/result.png", b"x", "image/png")
    assert info.value.code == "storage_failed"


def test_make_storage_picks_by_settings(settings, tmp_path):
    local = make_storage(settings)
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path / "media"
    remote = make_storage(settings.replace(cloudinary_url="cloudinary://k:s@cloud", cloudinary_folder="out"))
    assert isinstance(remote, CloudinaryStorage)
    assert remote.public_id_of("jobs/j/result.png") == "out/jobs/j/result"


# --- CloudinaryStorage --------------------------------------------------------


@pytest.fixture
def stub():
    with CloudinaryStub() as server:
        yield server


def storage_for(url: str, timeout: float = 2) -> CloudinaryStorage:
    return CloudinaryStorage(url, "imgproc/", timeout=timeout)


def test_parse_cloudinary_url():
    options = parse_cloudinary_url("cloudinary://123:s3cr-et@mycloud?upload_prefix=http://h:1")
    assert options["api_key"] == "123"
    assert options["api_secret"] == "s3cr-et"
    assert options["cloud_name"] == "mycloud"
    assert options["upload_prefix"] == "http://h:1"
    assert parse_cloudinary_url("cloudinary://1:2@c")["upload_prefix"] is None
    for bad in ("https://1:s3cret@c", "cloudinary://1@c", "cloudinary://c"):
        with pytest.raises(ValueError) as info:
            parse_cloudinary_url(bad)
        assert "s3cret" not in str(info.value)


def test_public_id_drops_only_the_extension():
    storage = storage_for("cloudinary://k:s@c")
    assert storage.public_id_of("jobs/j/result.png") == "imgproc/jobs/j/result"
    assert storage.public_id_of("a.b/c") == "imgproc/a.b/c"
    assert storage.public_id_of("dir/.hidden") == "imgproc/dir/.hidden"
    assert CloudinaryStorage("cloudinary://k:s@c", "").public_id_of("x.jpg") == "x"
    with pytest.raises(ValueError):
        storage.public_id_of("../x.png")


def test_cloudinary_upload_lands_under_folder_and_downloads(stub):
    storage = storage_for(stub.url)
    data = png()
    url = storage.put("jobs/j1/result.png", data, "image/png")
    [upload] = stub.uploads
    assert upload.public_id == "imgproc/jobs/j1/result"
    assert upload.data == data
    assert upload.params["overwrite"] == "1"
    assert upload.params["api_key"] == stub.api_key
    assert re.fullmatch(r"[0-9a-f]{40}", upload.params["signature"])
    assert url == upload.response["secure_url"]
    assert url.endswith("/imgproc/jobs/j1/result.png")
    assert download(url) == data
    # Credentials went with the call, not into the SDK's global configuration.
    assert cloudinary.config().api_secret != stub.api_secret
    assert storage.url_of("jobs/j1/result.png") is None
    assert stub.api_secret not in repr(storage)


def test_cloudinary_zip_is_a_raw_file_that_keeps_its_extension(stub):
    """A cut-out's zip is no image: Cloudinary takes it as a raw file, whose public_id ends in .zip."""
    data = b"PK\x05\x06" + bytes(18)  # an empty zip archive
    url = storage_for(stub.url).put("jobs/j3/cutout-bg.zip", data, "application/zip")
    [upload] = stub.uploads
    assert upload.public_id == "imgproc/jobs/j3/cutout-bg.zip"
    assert upload.response["resource_type"] == "raw"
    assert "/raw/upload/" in url and url.endswith("/imgproc/jobs/j3/cutout-bg.zip")
    assert download(url) == data


def test_cloudinary_same_key_overwrites(stub):
    storage = storage_for(stub.url)
    storage.put("jobs/j2/result.png", png((1, 2, 3, 255)), "image/png")
    second = png((4, 5, 6, 255), size=(3, 3))
    url = storage.put("jobs/j2/result.png", second, "image/png")
    assert [u.public_id for u in stub.uploads] == ["imgproc/jobs/j2/result"] * 2
    assert stub.uploads[1].response["overwritten"] is True
    assert download(url) == second


def test_cloudinary_wrong_secret_is_permanent_and_leaks_nothing(stub):
    wrong_secret = "Wrong-Secret_987654321zyx"
    wrong_url = stub.url.replace(stub.api_secret, wrong_secret)
    with pytest.raises(PermanentError) as info:
        storage_for(wrong_url).put("jobs/j3/result.png", png(), "image/png")
    error = info.value
    assert error.code == "storage_failed"
    assert not error.retryable
    # The stub really verified the signature, and echoed it back as Cloudinary does.
    [(status, message)] = stub.rejections
    assert status == 401 and message.startswith("Invalid Signature")
    sent_signature = re.search(r"Invalid Signature ([0-9a-f]+)", message).group(1)
    assert stub.uploads == []
    assert "401" in str(error)
    text = chain_text(error)
    for secret in (wrong_secret, stub.api_secret, sent_signature, wrong_url, stub.url):
        assert secret not in text


def test_cloudinary_sha256_signatures_from_the_url():
    with CloudinaryStub(signature_algorithm="sha256") as stub:
        storage = storage_for(stub.url + "&signature_algorithm=sha256")
        storage.put("jobs/j8/result.png", png(), "image/png")
        [upload] = stub.uploads
        assert re.fullmatch(r"[0-9a-f]{64}", upload.params["signature"])


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_cloudinary_server_errors_are_transient(stub, status):
    storage = storage_for(stub.url)
    stub.fail_next(1, status=status)
    with pytest.raises(TransientError) as info:
        storage.put("jobs/j4/result.png", png(), "image/png")
    assert info.value.code == "storage_failed"
    assert info.value.retryable
    assert str(status) in str(info.value)
    assert stub.api_secret not in chain_text(info.value)
    # The failure was one answer only: the retry goes through.
    assert storage.put("jobs/j4/result.png", png(), "image/png").startswith(stub.base_url)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_cloudinary_client_errors_are_permanent(stub, status):
    stub.fail_next(1, status=status)
    with pytest.raises(PermanentError) as info:
        storage_for(stub.url).put("jobs/j5/result.png", png(), "image/png")
    assert info.value.code == "storage_failed"
    assert stub.api_secret not in chain_text(info.value)


def test_cloudinary_timeout_is_transient(stub):
    stub.delay_next(1, 3)
    with pytest.raises(TransientError) as info:
        storage_for(stub.url, timeout=0.5).put("jobs/j6/result.png", png(), "image/png")
    assert info.value.code == "storage_failed"
    assert "timed out" in str(info.value).lower()
    assert stub.api_secret not in chain_text(info.value)


def test_cloudinary_connection_refused_is_transient():
    with CloudinaryStub() as stopped:
        url = stopped.url
    with pytest.raises(TransientError) as info:
        storage_for(url).put("jobs/j7/result.png", png(), "image/png")
    assert info.value.code == "storage_failed"
    assert stopped.api_secret not in chain_text(info.value)
    assert url not in chain_text(info.value)
