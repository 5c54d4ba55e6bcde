"""The package's shape: no import circles, no imports across floors, one table of job types."""

import inspect
import textwrap

from tests import jobstate_layout, layout


def test_no_import_circles_and_no_imports_across_floors():
    edges = layout.graph()
    assert len(edges) > 30  # the whole package was read
    assert layout.circles(edges) == []
    assert layout.crossings(edges) == {"upward": [], "sideways": [], "apart": [], "unplaced": []}


def _tree(tmp_path, files: dict[str, str]):
    root = tmp_path / "imgproc"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_checker_finds_a_hidden_circle_and_an_upward_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "",
            "api/__init__.py": "from .app import create_app\n",
            "api/app.py": "def create_app():\n    from .routes import bp\n",
            "api/routes.py": "from .app import create_app\nfrom . import helpers\n",
            "api/helpers.py": "",
            "queueing/__init__.py": "",
            "queueing/jobs.py": "from imgproc.api.routes import bp\nimport imgproc.config\n",
            "processing/ops.py": "from imgproc.adapters import fetch\nfrom imgproc.modelfiles import paths\n",
            "jobtypes.py": "",
            "modelfiles/__init__.py": "",
            "modelfiles/paths.py": "from imgproc import config, jobtypes\n",
            "adapters/__init__.py": "",
            "adapters/fetch.py": "",
            "worker/run.py": "from imgproc.api import create_app\n",
        },
    )
    edges = layout.graph(root)
    assert edges["imgproc.api.routes"] == {"imgproc.api.app", "imgproc.api.helpers"}
    assert layout.circles(edges) == [["imgproc.api.app", "imgproc.api.routes"]]
    crossed = layout.crossings(edges)
    assert crossed["upward"] == [("imgproc.queueing.jobs", "imgproc.api.routes")]
    assert crossed["sideways"] == [("imgproc.processing.ops", "imgproc.adapters.fetch")]
    assert crossed["apart"] == [
        ("imgproc.modelfiles.paths", "imgproc.jobtypes"),  # the model files use config and errors only
        ("imgproc.worker.run", "imgproc.api"),
    ]


def test_every_job_type_is_complete():
    from imgproc.adapters.db import records
    from imgproc.config import Settings
    from imgproc.jobtypes import JOB_TYPES, QUEUES
    from imgproc.processing import operations

    endpoints = [e for jt in JOB_TYPES.values() for e in (jt.single_endpoint, jt.bulk_endpoint)]
    assert len(endpoints) == len(set(endpoints))
    from rq.utils import import_attribute

    from imgproc.jobtypes import TASK, TASK_COMPLETE_BATCH, TASK_DELIVER

    for path in (TASK, TASK_DELIVER, TASK_COMPLETE_BATCH):  # the names rq stores resolve to functions
        assert callable(import_attribute(path)), path
    for jt in JOB_TYPES.values():
        assert jt.queue in QUEUES
        assert list(inspect.signature(getattr(operations, jt.operation)).parameters) == [
            "data",
            "opts",
            "tools",
        ]
        assert jt.column in records.c
        assert jt.schema(Settings())  # has options


def test_every_folder_of_python_modules_is_a_package_the_wheel_carries():
    """setup.cfg's find: takes folders with an __init__.py only; imgproc/tools once had none, so the
    editable install worked and the images' `imgproc` command failed (ModuleNotFoundError)."""
    import subprocess
    import sys

    from imgproc.config import ROOT

    # In a process of its own: importing setuptools here would replace distutils for the rest of the suite.
    listed = subprocess.run(
        [sys.executable, "-c", "import setuptools; print(*setuptools.find_packages(include=['imgproc*']))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    found = set(listed.stdout.split())
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "imgproc").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert folders - found == set()
    assert "imgproc.tools" in found


def test_the_job_type_table_has_no_copy_outside_it():
    assert layout.table_copies() == []


def test_the_checker_finds_a_copy_of_the_job_type_table(tmp_path, monkeypatch):
    names, endpoints = ["remove-bg", "crop-face"], ["remove-bg-queue", "bulk-remove-bg", "bulk-crop-face"]
    monkeypatch.setitem(layout.COPIES_ALLOWED, ("tools/cli.py", "remove-bg,crop-face"), "a literal allowed")
    root = _tree(
        tmp_path,
        {
            "jobtypes.py": 'JOB_TYPES = {"remove-bg": ("remove-bg-queue", "bulk-remove-bg")}\n',
            "client/jobtypes.py": 'ENDPOINTS = {"remove-bg": ("remove-bg-queue", "bulk-remove-bg")}\n',
            "adapters/config.py": '''\
                """Columns per job type: [vendors.acme.columns.remove-bg]."""
                NO_MODEL = frozenset({"crop-face"})
                def f():
                    """Prose may name remove-bg."""
                    return f"{API}/bulk-crop-face?x=1"
                ''',
            "tools/cli.py": 'DEFAULT = "remove-bg,crop-face"\n',  # on the allow-list, with its reason
            "worker/cli.py": 'DEFAULT = "remove-bg,crop-face"\nHELP = "the remove-bg bulks"\n',
            "api/web/static/x.js": "// remove-bg\nconst OPS = {'remove-bg': {b: `/api/bulk-remove-bg`}};\n",
            "api/web/templates/page.html": '<option value="crop-face">Crop</option>\n<p>remove-bg</p>\n',
        },
    )
    assert layout.table_copies(root, names, endpoints) == [
        ("adapters/config.py", 2, "crop-face"),
        ("adapters/config.py", 5, "/bulk-crop-face?x=1"),
        ("api/web/static/x.js", 2, "remove-bg"),
        ("api/web/static/x.js", 2, "/api/bulk-remove-bg"),
        ("api/web/templates/page.html", 1, "crop-face"),
        ("worker/cli.py", 1, "remove-bg,crop-face"),
    ]


def test_no_probe_of_a_protocol_typed_field():
    assert layout.protocol_probes() == []


def test_the_checker_finds_probes_of_protocol_typed_fields(tmp_path):
    root = _tree(
        tmp_path,
        {
            "adapters/storage.py": """\
                from typing import Protocol
                class Storage(Protocol):
                    def put(self, key: str) -> str: ...
                """,
            "worker/runtime.py": """\
                from typing import Protocol, Optional
                class Remover(Matting, Protocol): ...
                class Runtime:
                    storage: "Storage"
                    remover: Optional[Remover] = None
                    def provider(self):
                        return self.remover.provider if hasattr(self.remover, "provider") else "none"
                    def close(self, exc):
                        if isinstance(self.storage, LocalStorage):
                            return getattr(exc, "orig", None), getattr(self.remover, "batchers", {})
                """,
            "api/media.py": """\
                def serve(storage, key, vendors: dict):
                    if not hasattr(storage, "path_of") or isinstance(vendors, dict):
                        return getattr(storage, "path_of")(key), getattr(vendors, "x", None)
                """,
        },
    )
    assert layout.protocol_probes(root) == [
        ("api/media.py", 2, "hasattr(storage, 'path_of')"),
        ("worker/runtime.py", 7, "hasattr(self.remover, 'provider')"),
        ("worker/runtime.py", 9, "isinstance(self.storage, LocalStorage)"),
        ("worker/runtime.py", 10, "getattr(self.remover, 'batchers', {})"),
    ]


def test_only_the_job_state_names_meta_keys_and_only_payload_reads_a_stored_job():
    assert jobstate_layout.meta_keys() == []
    assert jobstate_layout.payload_readers() == []


def test_the_checker_finds_meta_keys_and_raw_payload_reads(tmp_path):
    (tmp_path / "queueing").mkdir()
    (tmp_path / "queueing" / "state.py").write_text('def of(job):\n    return job.meta.get("vendor")\n')
    (tmp_path / "jobtypes.py").write_text("def of(job):\n    return job.args[0]\n")
    (tmp_path / "worker.py").write_text(
        textwrap.dedent(
            """
            def run(job, meta, other):
                job.meta["attempts"] = 1
                stage = meta.get("stage")
                meta.pop("error", None)
                data = job.args[0]
                keep = job.meta  # handing the dict on names no key
                fine = other.get("stage")  # not a meta
                return stage, data, keep, fine
            """
        )
    )
    assert jobstate_layout.meta_keys(tmp_path) == [("worker.py", 3), ("worker.py", 4), ("worker.py", 5)]
    assert jobstate_layout.payload_readers(tmp_path) == [("worker.py", 6)]
