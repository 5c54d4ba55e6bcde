"""deploy/kubernetes: both overlays render with kustomize and validate against Kubernetes 1.32's schemas.

Rendering is ``kubectl kustomize`` (kubectl ships kustomize); the built-in kinds
are checked by ``kubernetes-validate`` (strict: no unknown field) against 1.32,
the version the README names. KEDA's ScaledObject has no schema there: its
fields are checked here against KEDA 2's ScaledObject spec (scaleTargetRef,
triggers with string metadata, replica counts), by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from imgproc.config import ROOT
from imgproc.jobtypes import ALL_QUEUES

KUBERNETES = "1.32.0"
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def rendered(request) -> tuple[str, list[dict]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the dev extras")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        _missing("kubectl (it renders the kustomize overlays)")
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / request.param)], capture_output=True, text=True, check=True
    ).stdout
    return request.param, [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_builtin_kinds_validate_against_the_schemas(rendered):
    try:
        import kubernetes_validate
    except ImportError:
        _missing("kubernetes-validate (dev extras)")
    _, docs = rendered
    builtin = [d for d in docs if d["kind"] != "ScaledObject"]
    assert {d["kind"] for d in builtin} == {"ConfigMap", "Deployment", "Service", "Job"}
    for doc in builtin:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises ValidationError


def test_a_worker_deployment_per_queue_that_lets_its_job_finish(rendered):
    _, docs = rendered
    config = by_kind(docs, "ConfigMap")["imgproc-config"]["data"]
    job_timeout = int(config["IMGPROC_JOB_TIMEOUT"])
    workers = {
        d["metadata"]["labels"]["imgproc.io/queue"]: d
        for d in by_kind(docs, "Deployment").values()
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }
    assert sorted(workers) == sorted(ALL_QUEUES)
    for queue, deployment in workers.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "worker.py", "--queues", queue]
        grace = pod["terminationGracePeriodSeconds"]
        if queue == "webhooks":
            assert grace > 15  # IMGPROC_WEBHOOK_TIMEOUT
        else:
            assert grace >= job_timeout + 30, queue  # the job, then its upload and its record
        # Ready means models loaded: the file the worker writes after loading them.
        assert container["readinessProbe"]["exec"]["command"] == ["test", "-f", config["IMGPROC_READY_FILE"]]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert os.path.dirname(config["IMGPROC_READY_FILE"]) in mounts
        assert "livenessProbe" not in container


def test_the_gpu_overlay_puts_background_removal_on_one_gpu(rendered):
    overlay, docs = rendered
    deployments = by_kind(docs, "Deployment")
    limits = {
        name: d["spec"]["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        for name, d in deployments.items()
    }
    gpus = {name: lim["nvidia.com/gpu"] for name, lim in limits.items() if "nvidia.com/gpu" in lim}
    if overlay == "cpu":
        assert gpus == {}
        assert by_kind(docs, "ConfigMap")["imgproc-config"]["data"]["IMGPROC_DEVICE"] == "cpu"
        return
    assert gpus == {"imgproc-worker-bg-removal": 1}
    container = deployments["imgproc-worker-bg-removal"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IMGPROC_DEVICE"] == "cuda" and container["image"].endswith(":gpu")
    assert all(
        d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":cpu")
        for name, d in deployments.items()
        if name != "imgproc-worker-bg-removal"
    )


def test_api_is_probed_on_health_and_reached_through_its_service(rendered):
    _, docs = rendered
    api = by_kind(docs, "Deployment")["imgproc-api"]["spec"]["template"]
    (container,) = api["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "tcpSocket" in container["livenessProbe"]  # a Redis outage must not restart every API pod
    service = by_kind(docs, "Service")["imgproc-api"]["spec"]
    assert service["selector"].items() <= api["metadata"]["labels"].items()
    assert service["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_a_scaled_object_per_worker_on_the_backlog_with_running_jobs(rendered, client):
    overlay, docs = rendered
    exported = client.get("/metrics").get_data(as_text=True)  # what imgproc's /metrics really has
    workers = {
        name: d
        for name, d in by_kind(docs, "Deployment").items()
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }
    scaled = by_kind(docs, "ScaledObject")
    assert sorted(so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()) == sorted(workers)
    for so in scaled.values():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        queue = workers[spec["scaleTargetRef"]["name"]]["metadata"]["labels"]["imgproc.io/queue"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert all(isinstance(v, str) for v in trigger["metadata"].values())  # KEDA: a map of strings
        query = trigger["metadata"]["query"]
        for metric in ("imgproc_queue_depth", "imgproc_jobs_running"):
            assert f'{metric}{{queue="{queue}"}}' in query
            assert f"# TYPE {metric} gauge" in exported
        assert float(trigger["metadata"]["threshold"]) >= 1
        down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 60 and down["policies"] == [
            {"type": "Pods", "value": 1, "periodSeconds": 60}
        ]
    if overlay == "gpu":  # one pod runs IMGPROC_BATCH jobs at once
        assert scaled["imgproc-worker-bg-removal"]["spec"]["triggers"][0]["metadata"]["threshold"] == "8"
