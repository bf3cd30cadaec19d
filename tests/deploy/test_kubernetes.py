"""deploy/kubernetes/: every manifest is valid against the Kubernetes schemas, every CronJob
refuses to retry bad configuration, and the sweep Deployment's probe really detects a stale loop.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.deployfiles import (
    DOCKERFILE,
    KUBERNETES,
    SPEC_PERIODS,
    container,
    cronjobs,
    deployments,
    manifest_files,
    manifests,
    pod_spec,
)

# The oldest release with podFailurePolicy and CronJob timeZone both GA, and the newest known.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes__every_manifest__valid_against_the_schemas(version: str) -> None:
    checked = []
    for path, doc in manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {doc['kind']} invalid on Kubernetes {version}: {error}")
        checked.append(doc["kind"])

    assert checked.count("CronJob") == len(SPEC_PERIODS)
    assert {"Deployment", "ConfigMap", "PodDisruptionBudget"} <= set(checked)


def test_kubernetes__kustomization__lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())

    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert [image["name"] for image in kustomization["images"]] == ["examctl"]


def _pod_checks(resource: dict[str, Any]) -> None:
    name = resource["metadata"]["name"]
    pod, spec = pod_spec(resource), container(resource)
    refs = [next(iter(ref.values()))["name"] for ref in spec["envFrom"]]

    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True, name
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False, name
    assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"], name
    assert {"secretRef": {"name": "examctl"}} in spec["envFrom"], name
    assert refs == ["examctl-config", "examctl"], name
    assert "env" not in spec, f"{name}: configuration comes from the ConfigMap and the Secret"
    assert set(spec["resources"]) == {"requests", "limits"}, name
    assert spec["resources"]["limits"]["memory"], name
    assert spec["image"].split(":")[0] == "examctl", name


def test_kubernetes__every_cronjob__forbid_utc_and_no_retry_of_exit_2() -> None:
    jobs = cronjobs()

    assert sorted(jobs) == sorted(SPEC_PERIODS)
    for job, cronjob in jobs.items():
        spec, job_spec = cronjob["spec"], cronjob["spec"]["jobTemplate"]["spec"]
        rules = job_spec["podFailurePolicy"]["rules"]
        fail_job = [r for r in rules if r["action"] == "FailJob"]

        assert cronjob["metadata"]["name"] == f"examctl-{job}"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["timeZone"] == "UTC"
        assert 0 < spec["startingDeadlineSeconds"] < SPEC_PERIODS[job]
        assert job_spec["backoffLimit"] >= 0
        assert job_spec["activeDeadlineSeconds"] > 0, "a hung run would block every later run"
        assert pod_spec(cronjob)["restartPolicy"] == "Never", "podFailurePolicy requires Never"
        assert fail_job[0]["onExitCodes"] == {
            "containerName": container(cronjob)["name"],
            "operator": "In",
            "values": [2],
        }
        _pod_checks(cronjob)


def test_kubernetes__sweep__two_replicas_probed_and_given_time_to_finish_a_round() -> None:
    sweep = deployments()["sweep"]
    pod, spec = pod_spec(sweep), container(sweep)
    health = spec["args"][spec["args"].index("--health-file") + 1]
    mounts = [m["mountPath"] for m in spec["volumeMounts"]]

    assert sweep["spec"]["replicas"] >= 2
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert health in " ".join(spec["livenessProbe"]["exec"]["command"])
    assert os.path.dirname(health) in mounts, "the health file needs a writable volume"
    assert "FOR UPDATE SKIP LOCKED" in (KUBERNETES / "deployment-sweep.yaml").read_text()
    _pod_checks(sweep)


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe"])
def test_kubernetes__sweep_probe__fresh_file_alive_stale_or_missing_dead(
    probe: str, tmp_path: Path
) -> None:
    spec = container(deployments()["sweep"])
    health = spec["args"][spec["args"].index("--health-file") + 1]
    command = [
        a.replace(health, str(tmp_path / "sweep.health")) for a in spec[probe]["exec"]["command"]
    ]

    def alive() -> bool:
        return subprocess.run(command, capture_output=True, check=False).returncode == 0

    assert not alive(), "no health file yet"
    (tmp_path / "sweep.health").touch()
    assert alive()
    stale = time.time() - 10 * 60
    os.utime(tmp_path / "sweep.health", (stale, stale))
    assert not alive()


def test_kubernetes__pods__run_as_the_images_user() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)

    assert user is not None
    for _, doc in manifests():
        if doc["kind"] in ("CronJob", "Deployment"):
            context = pod_spec(doc)["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == tuple(map(int, user.groups()))
