"""helm for the tests: the binary `tools/build-helm.sh` builds from the pinned Go module
(`HELM_VERSION` in tools/versions.env) into the per-machine cache, or a ready one named by
`HELM`. Without it a test skips saying how to get it, and fails under CI=true (the same rule
as the control plane's binaries).

`Helm` runs it with a private home (no repositories, plugins or caches of the machine's user),
and `template` renders a chart into parsed documents for a Kubernetes version of our choosing
(`helm template` otherwise assumes v1.20, older than the chart's `kubeVersion`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.controlplane import versions
from tests.support.fixtures_kube import under_ci

__all__ = ["HOW_TO_GET_HELM", "Helm", "find_helm", "require_helm"]

HOW_TO_GET_HELM = (
    "helm is missing: run tools/build-helm.sh (needs Go >= 1.26 and the Go module proxy; it "
    "builds helm.sh/helm/v3 at the version pinned in tools/versions.env), or set HELM to a "
    "helm binary"
)


def cached_helm() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubegate" / "tools" / f"helm-{versions()['HELM_VERSION']}" / "helm"


def find_helm() -> Path | None:
    ready = os.environ.get("HELM")
    binary = Path(ready) if ready else cached_helm()
    return binary if os.access(binary, os.X_OK) else None


def require_helm() -> Path:
    binary = find_helm()
    if binary is None:
        if under_ci():
            pytest.fail(f"CI=true and {HOW_TO_GET_HELM}", pytrace=False)
        pytest.skip(HOW_TO_GET_HELM)
    return binary


@dataclass(frozen=True, kw_only=True)
class Helm:
    """helm with its home under `folder`; `kubeconfig` for the commands that reach a cluster."""

    binary: Path
    folder: Path
    kubeconfig: Path | None = None

    def run(self, *args: str, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        home = {f"HELM_{name}_HOME": str(self.folder / name.lower())
                for name in ("CACHE", "CONFIG", "DATA")}
        environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.folder), **home}
        if self.kubeconfig is not None:
            environ["KUBECONFIG"] = str(self.kubeconfig)
        return subprocess.run(  # noqa: S603 - the pinned helm on the test's own arguments
            [str(self.binary), *args], input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False, env=environ)

    def template_text(self, chart: Path, *, namespace: str = "kubegate",
                      values: Mapping[str, Any] | None = None, release: str = "kubegate",
                      ) -> subprocess.CompletedProcess[str]:
        """`helm template` with CRDs, values given as a YAML document on stdin."""
        return self.run("template", release, str(chart), "--namespace", namespace,
                        "--include-crds", "--kube-version", versions()["KUBE_VERSION"],
                        "--values", "-", stdin=yaml.safe_dump(dict(values or {})))

    def template(self, chart: Path, *, namespace: str = "kubegate",
                 values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rendered documents, parsed; a failed render fails the test with helm's words."""
        result = self.template_text(chart, namespace=namespace, values=values)
        assert result.returncode == 0, result.stderr
        return [document for document in yaml.safe_load_all(result.stdout) if document]
