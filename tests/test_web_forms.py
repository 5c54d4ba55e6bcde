"""The vendor page's form and the scripts' job types come from the job-type table, without a browser."""

from __future__ import annotations

import dataclasses
import json
from html.parser import HTMLParser

import pytest

from imgproc.jobtypes import JOB_TYPES
from imgproc.optiontypes import MAX_SIDE, form_of

from .test_web_security import sign_in


class _Page(HTMLParser):
    """The page's option fields (by fieldset), its operations and the text of its JSON block."""

    def __init__(self):
        super().__init__()
        self.fieldsets: dict[str, dict[str, dict]] = {}
        self.operations: list[tuple[str, str]] = []
        self.job_types = ""
        self._fieldset = self._select = self._option = None
        self._in_json = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "fieldset" and "data-for" in attrs:
            self._fieldset = self.fieldsets.setdefault(attrs["data-for"], {})
        elif tag == "script" and attrs.get("type") == "application/json":
            self._in_json = attrs.get("id") == "job-types"
        elif tag in ("input", "select") and "data-option" in attrs and self._fieldset is not None:
            field = {**attrs, "tag": tag, "choices": [], "selected": None}
            assert attrs["data-option"] not in self._fieldset, f"two fields for {attrs['data-option']}"
            self._fieldset[attrs["data-option"]] = field
            self._select = field if tag == "select" else None
        elif tag == "select" and attrs.get("id") == "operation":
            self._select = {"choices": [], "selected": None, "operation": True}
        elif tag == "option" and self._select is not None:
            self._select["choices"].append(attrs.get("value"))
            if "selected" in attrs:
                self._select["selected"] = attrs.get("value")
            self._option = attrs.get("value")

    def handle_endtag(self, tag):
        if tag == "fieldset":
            self._fieldset = None
        elif tag == "select":
            self._select = None
        elif tag == "script":
            self._in_json = False
        elif tag == "option":
            self._option = None

    def handle_data(self, data):
        if self._in_json:
            self.job_types += data
        elif self._option is not None and self._select and self._select.get("operation"):
            self.operations.append((self._option, data))


@pytest.fixture
def page(app, vendor_key):
    client = app.test_client()
    assert sign_in(client, vendor_key("acme")["X-API-Key"]).status_code == 303

    def read() -> _Page:
        parsed = _Page()
        parsed.feed(client.get("/ui/").text)
        return parsed

    return read


def test_every_option_of_every_job_type_has_its_field_as_the_schema_says(page, settings):
    found = page()
    assert found.operations == [(jt.name, jt.title) for jt in JOB_TYPES.values()]
    assert set(found.fieldsets) == set(JOB_TYPES)
    for name, jt in JOB_TYPES.items():
        schema = jt.schema(settings)
        fields = found.fieldsets[name]
        assert set(fields) == set(schema), name
        for option, (check, default) in schema.items():
            form, field = form_of(check), fields[option]
            where = f"{name} {option}"
            if form["kind"] == "choice":
                assert field["tag"] == "select", where
                assert field["choices"] == ([""] if default is None else []) + form["choices"], where
                assert field["selected"] == default, where
            elif form["kind"] == "bool":
                assert field["type"] == "checkbox" and ("checked" in field) == default, where
            elif form["kind"] in ("int", "number"):
                assert field["type"] == "number", where
                assert (float(field["min"]), float(field["max"])) == (form["min"], form["max"]), where
            elif form["kind"] == "size":
                assert (int(field["data-min"]), int(field["data-max"])) == (1, MAX_SIDE), where
            elif form["kind"] == "color":
                assert field["type"] == "color" and field["value"] == (default or "#ffffff"), where
            if default is not None and form["kind"] in ("int", "number", "aspect"):
                assert field["placeholder"] == str(default), where  # left empty, the API's default
    assert found.fieldsets["remove-bg"]["max_size"]["max"] == str(MAX_SIDE)  # the page had 8000
    assert json.loads(found.job_types) == {
        jt.name: {"label": jt.title, "single": jt.single_endpoint, "bulk": jt.bulk_endpoint}
        for jt in JOB_TYPES.values()
    }


def test_a_job_type_added_to_the_table_is_on_the_page(page, monkeypatch):
    """The table's promise (one entry plus its function) holds for the page: nothing else to write."""
    from imgproc import optiontypes as o

    blur = dataclasses.replace(
        JOB_TYPES["process-image"],
        name="blur",
        title="Blur </script><script>alert(1)</script>",  # the JSON block cannot be ended from the table
        single_endpoint="blur-queue",
        bulk_endpoint="bulk-blur",
        schema=lambda settings: {"radius": (o.whole(1, 50), 4), "edges": (o.choice("keep", "wrap"), "keep")},
    )
    monkeypatch.setitem(JOB_TYPES, "blur", blur)
    found = page()
    assert ("blur", blur.title) in found.operations
    assert set(found.fieldsets["blur"]) == {"radius", "edges"}
    assert found.fieldsets["blur"]["radius"]["max"] == "50"
    assert found.fieldsets["blur"]["edges"]["choices"] == ["keep", "wrap"]
    assert json.loads(found.job_types)["blur"] == {
        "label": blur.title,
        "single": "blur-queue",
        "bulk": "bulk-blur",
    }
    assert "</script><script>" not in found.job_types
