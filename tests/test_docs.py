"""The documentation: its settings tables are Settings' own, its site builds, the README's links land.

The settings tables of docs/ are made by docs/hooks/settings_table.py; here each variable a table
names is set and ``Settings.from_env`` must change its field, so a renamed or dropped setting fails
even if the table were edited by hand. The site is built as ``make lint`` builds it (strict: a link
to a page or heading that is not there fails), and a table that drifted must fail that build.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imgproc.config import ROOT, Settings

DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("settings_table", DOCS / "hooks" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as MkDocs loads it: its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


hook = _hook()


def checked_in_rows(page: str = "configuration.md") -> dict[str, str]:
    """Variable -> its default cell, as the checked-in table of the page says."""
    (table,) = [m["table"] for m in hook.MARKED.finditer((DOCS / page).read_text())]
    cells = {}
    for line in table.splitlines()[2:]:
        names, defaults, _ = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        for name, default in zip(names.split(", "), re.split(r"(?<=`), (?=`)", defaults), strict=True):
            cells[name.strip("`")] = default
    return cells


def test_the_checked_in_tables_are_made_from_settings_now():
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        assert hook.refreshed(text) == text, f"{page}: run .venv/bin/python docs/hooks/settings_table.py"


def test_every_setting_is_a_row_with_its_variable_and_default():
    cells = checked_in_rows()
    fields = hook.settable()
    assert sorted(cells) == sorted(hook.env_name(f) for f in fields)
    assert cells["IMGPROC_JOB_TIMEOUT"] == f"`{Settings().job_timeout}`"
    assert cells["IMGPROC_FETCH_DEADLINE"] == "`30`"
    assert cells["IMGPROC_MAX_IMAGE_BYTES"] == "`20971520` (20 MiB)"
    assert cells["IMGPROC_DATABASE_URL"] == "`sqlite:///<checkout>/var/imgproc.db`"
    assert cells["IMGPROC_CACHE_DIR"] == "`~/.cache/imgproc`"
    assert cells["IMGPROC_WEBHOOK_THREAD"] == "`1`" and cells["IMGPROC_PUBLIC_URL"] == "empty"
    assert "README" not in (DOCS / "configuration.md").read_text()  # config.py's pointers are mapped


def _another(field: dataclasses.Field) -> tuple[str, object]:
    """A value of the field's variable other than its default, and what Settings should make of it."""
    chosen = {"device": "cpu", "precision": "fp32", "bg_model": "u2net"}
    default = field.default
    if field.name in chosen:
        return chosen[field.name], chosen[field.name]
    if isinstance(default, bool):
        return ("0", False) if default else ("1", True)
    if isinstance(default, int):
        return str(default + 1), default + 1
    if isinstance(default, float):
        return str(default + 1.5), default + 1.5
    if isinstance(default, tuple) and default and isinstance(default[0], int):
        return "1,2", (1, 2)
    if isinstance(default, tuple):
        return "isnet-general-use,u2net", ("isnet-general-use", "u2net")
    return "x" + default, "x" + default


def test_each_variable_the_table_names_is_read_into_its_field():
    by_name = {hook.env_name(f.name): f for f in dataclasses.fields(Settings) if f.name in hook.settable()}
    for name in checked_in_rows():
        field = by_name[name]
        raw, expected = _another(field)
        settings = Settings.from_env({name: raw})
        assert getattr(settings, field.name) == expected != field.default, name


def _mkdocs() -> list[str]:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        message = "mkdocs-material is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [sys.executable, "-m", "mkdocs", "build", "--strict"]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_mkdocs(), "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_strictly_with_every_page_and_setting(tmp_path):
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    configuration = (site / "configuration" / "index.html").read_text()
    for name in checked_in_rows():
        assert f"<code>{name}</code>" in configuration, name
    assert (site / "page-vendor.png").stat().st_size > 0 and (site / "page-operator.png").exists()
    assert 'src="../page-vendor.png"' in (site / "web-page" / "index.html").read_text()
    # The README's blocks included by the pages (written once, in the README).
    assert "run-workers" in (site / "running" / "index.html").read_text()
    architecture = (site / "architecture" / "index.html").read_text()
    assert "floor 0: settings" in architecture and "parses the request once" in architecture
    assert "Prometheus with deploy/prometheus" in (site / "docker" / "index.html").read_text()
    assert not (site / "hooks").exists()
    assert not re.search(r"fonts\.(googleapis|gstatic)\.com", configuration)  # nothing fetched by a reader


def test_a_table_that_drifted_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "configuration.md"
    page.write_text(
        page.read_text().replace("| `IMGPROC_JOB_TIMEOUT` | `300` |", "| `IMGPROC_JOB_TIMEOUT` | `30` |")
    )
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config.update(docs_dir=str(docs), hooks=[str(docs / "hooks" / "settings_table.py")])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "configuration.md: a settings table differs from Settings" in done.stderr, done.stderr


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the page's headings (Python-Markdown's toc slugify)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slugify(m[1], "-") for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_every_link_of_the_readme_lands():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert sum(link.startswith("docs/") for link in links) >= 28  # every page of the map
    own = _anchors(ROOT / "README.md")
    for link in links:
        path, _, anchor = link.partition("#")
        if link.startswith("#"):
            assert anchor in own, link
            continue
        if re.match(r"\w+://", link):
            continue
        target = ROOT / path
        assert target.exists(), link
        if anchor:
            assert anchor in _anchors(target), link


def test_the_readme_keeps_the_first_screen_and_the_map():
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert {"Running the parts separately", "Documentation", "How it fits together"} <= set(headings)
    assert len(readme.splitlines()) < 300  # the reference is in docs/
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = {p for section in nav for v in section.values() for p in ([v] if isinstance(v, str) else v)}
    assert pages == {p.name for p in DOCS.glob("*.md")}
    assert pages <= set(re.findall(r"\]\(docs/([\w-]+\.md)\)", readme))  # the map names every page
