"""deploy/kubernetes validates against the Kubernetes API schemas (kubernetes-validate,
bundled schemas: offline), as files and as kustomize renders them; the DaemonSet has what
the agent needs (README "Fleets"); the config in the ConfigMap passes ``check``'s parser."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

kv = pytest.importorskip("kubernetes_validate",
                         reason="kubernetes-validate is a test extra: pip install -e .[test]")

from dispatcher.config.model import parse_config  # noqa: E402
from tests.objects import REPO  # noqa: E402

K8S = os.path.join(REPO, "deploy", "kubernetes")
VERSION = "1.30"          # oldest Kubernetes still commonly run with these fields


def _validate(doc: dict[str, Any]) -> None:
    kv.validate(doc, VERSION, strict=True)


def _resources() -> list[str]:
    return [f for f in sorted(glob.glob(os.path.join(K8S, "base", "*.yaml")))
            if not f.endswith("kustomization.yaml")]


@pytest.mark.parametrize("path", _resources(), ids=os.path.basename)
def test_base_files_validate(path: str) -> None:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            _validate(doc)


def test_validation_can_fail() -> None:
    with open(os.path.join(K8S, "base", "daemonset.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kv.ValidationError):
        _validate(doc)


def _daemonset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds


def test_daemonset_has_what_the_agent_needs() -> None:
    with open(os.path.join(K8S, "base", "daemonset.yaml")) as f:
        ds = yaml.safe_load(f)
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert spec["hostNetwork"] is True
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1,
                                                             "maxSurge": 0}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["bpffs"]["mountPath"] == "/sys/fs/bpf"
    assert mounts["bpffs"]["mountPropagation"] == "Bidirectional"
    assert c["securityContext"]["privileged"] is True      # Bidirectional requires it
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["state"]["hostPath"]["path"] == "/run/xdp-dispatch"
    assert {"netns", "host-proc", "config"} <= set(vols)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9720"
    assert c["resources"]["requests"]


def test_dockerfile_entry_is_the_agent() -> None:
    with open(os.path.join(K8S, "Dockerfile")) as f:
        text = f.read()
    assert "FROM debian:" in text and "-slim" in text and "python3 -m venv" in text
    assert 'ENTRYPOINT ["xdp-dispatch", "agent", "/etc/xdp-dispatch/config.yaml"]' in text


def test_configmap_config_parses() -> None:
    with open(os.path.join(K8S, "base", "configmap.yaml")) as f:
        cm = yaml.safe_load(f)
    cfg = parse_config(cm["data"]["config.yaml"], "configmap", "/")
    assert cfg.on_drift == "repair"


KUSTOMIZE = shutil.which("kubectl")


@pytest.mark.skipif(KUSTOMIZE is None, reason="kubectl (its built-in kustomize) is not "
                                              "installed: overlays are not rendered")
@pytest.mark.parametrize("where", ["base", "overlays/capabilities", "overlays/derived-image",
                                   "overlays/configmap-objects"])
def test_kustomize_renders_validate(where: str) -> None:
    assert KUSTOMIZE is not None
    out = subprocess.run([KUSTOMIZE, "kustomize", os.path.join(K8S, where)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for d in docs:
        _validate(d)
    ds = _daemonset(docs)
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    if where == "overlays/capabilities":
        assert c["securityContext"]["privileged"] is False
        assert "BPF" in c["securityContext"]["capabilities"]["add"]
        bpffs = next(m for m in c["volumeMounts"] if m["name"] == "bpffs")
        assert bpffs["mountPropagation"] == "HostToContainer"
    if where == "overlays/configmap-objects":
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"
                 and d["metadata"]["name"].startswith("xdp-dispatch-objects-")]
        assert "xdp_counter.o" in cm["binaryData"]
        vol = next(v for v in spec["volumes"] if v["name"] == "objects")
        assert vol["configMap"]["name"] == cm["metadata"]["name"]    # hashed name followed
    if where == "overlays/derived-image":
        assert c["image"].endswith("xdp-dispatch-with-objects:0.1.0-objects.1")
