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
        #: Each label's text, by the id of its field.
        self.labels: dict[str, str] = {}
        self._fieldset = self._select = self._option = self._label = None
        self._in_json = self._in_more = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "fieldset" and "data-for" in attrs:
            self._fieldset = self.fieldsets.setdefault(attrs["data-for"], {})
        elif tag == "script" and attrs.get("type") == "application/json":
            self._in_json = attrs.get("id") == "job-types"
        elif tag in ("input", "select") and "data-option" in attrs and self._fieldset is not None:
            field = {**attrs, "tag": tag, "choices": [], "texts": [], "sets": {}, "selected": None}
            field["more"] = self._in_more
            assert attrs["data-option"] not in self._fieldset, f"two fields for {attrs['data-option']}"
            self._fieldset[attrs["data-option"]] = field
            self._select = field if tag == "select" else None
        elif tag == "select" and attrs.get("id") == "operation":
            self._select = {"choices": [], "selected": None, "operation": True}
        elif tag == "details" and "more" in (attrs.get("class") or "").split():
            self._in_more = True
        elif tag == "label" and "for" in attrs:
            self._label = attrs["for"]
            self.labels[self._label] = ""
        elif tag == "option" and self._select is not None:
            self._select["choices"].append(attrs.get("value"))
            if "data-sets" in attrs:
                self._select["sets"][attrs.get("value")] = json.loads(attrs["data-sets"])
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
        elif tag == "details":
            self._in_more = False
        elif tag == "label":
            self._label = None

    def handle_data(self, data):
        if self._in_json:
            self.job_types += data
        elif self._label is not None:
            self.labels[self._label] += data
        elif self._option is not None and self._select and "texts" in self._select:
            self._select["texts"].append(data)
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


def test_remove_bg_offers_the_cut_out_options_and_its_presets_are_the_marketplaces(page, settings):
    """Cut-outs to a spec (API.md): each new option has its words, the rare ones fold away, and a
    marketplace preset is offered by its title and marks what it sets, as the ID presets do."""
    from imgproc.presets import MARKETPLACES, PRESETS, marketplace_options, preset_options

    found = page()
    fields = found.fieldsets["remove-bg"]
    labels = {option: found.labels[field["id"]] for option, field in fields.items()}
    assert labels["preset"] == "Marketplace preset"
    assert found.labels[found.fieldsets["crop-face"]["preset"]["id"]] == "ID-photo preset"
    for option in ("crop", "crop_margin", "canvas", "scale", "shadow"):
        assert not fields[option]["more"], option  # what a layout sets, in sight
    for option in ("position", "bg_image_url", "bg_blur", "keep_alpha", "channels"):
        assert fields[option]["more"], option
    assert "Crop" in labels["crop"] and "Canvas" in labels["canvas"] and "Margin" in labels["crop_margin"]
    # Text kinds go as typed (no data-kind), the canvas as a size, the background photo as a URL.
    assert all("data-kind" not in fields[o] for o in ("crop_margin", "scale", "position"))
    assert "85%" in fields["scale"]["placeholder"] and "%" in fields["crop_margin"]["placeholder"]
    assert fields["canvas"]["data-kind"] == "size" and fields["bg_image_url"]["type"] == "url"
    assert fields["format"]["choices"][-1] == "zip" and "alpha.png" in fields["format"]["texts"][-1]

    # The preset's choices: the marketplaces by their titles; the fields they set, marked.
    assert fields["preset"]["choices"][1:] == list(MARKETPLACES)
    assert fields["preset"]["texts"][1:] == [m.title for m in MARKETPLACES.values()]
    sets = set().union(*(marketplace_options(m) for m in MARKETPLACES.values()))
    assert {o for o, f in fields.items() if "data-preset-sets" in f} == sets
    for name, marketplace in MARKETPLACES.items():  # the checkboxes it ticks when chosen
        wanted = {k: v for k, v in marketplace_options(marketplace).items() if isinstance(v, bool)}
        assert fields["preset"]["sets"].get(name, {}) == wanted, name
    assert fields["preset"]["sets"]["amazon-main"] == {"crop": True}
    crop = found.fieldsets["crop-face"]
    id_sets = set().union(*(preset_options(p) for p in PRESETS.values()))
    assert {o for o, f in crop.items() if "data-preset-sets" in f} == id_sets  # as before
    assert crop["preset"]["texts"][1].startswith(next(iter(PRESETS.values())).title)
