"""Loopback HTTPS issuers shaped like CircleCI, Buildkite, Bitbucket Pipelines, Azure DevOps and
Jenkins' OIDC Provider plugin, for `ci-examples/` and the provider lints.

Each issuer is an `oidc.OIDCIssuer` (discovery, JWKS, key rotation) whose URL carries the
provider's path, so `iss` has the provider's shape on 127.0.0.1: CircleCI
`/org/ORG_ID`, Bitbucket `/2.0/workspaces/W/pipelines-config/identity/oidc`, Azure DevOps
`/ORG_ID`, Jenkins `/oidc`, Buildkite none (`https://agent.buildkite.com`). The claim sets,
their names, JSON types and default audiences are the ones written down, with their sources,
in `ci-examples/<provider>/README.md`.

Invariants:
- claim builders are pure functions of a job description, the issuer URL and the time;
- ids are strings (UUIDs; Bitbucket's wrapped in braces) and numbers are numbers where the
  provider sends numbers (Buildkite's and Jenkins' `build_number`);
- every token carries `sub`, `aud`, `iat` and `exp`, as kubegate requires.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.support.oidc import (
    DISCOVERY_PATH,
    Claims,
    OIDCIssuer,
    Route,
    issued_at,
    tamper_claims,
)
from tests.support.pki import TestCA

CIRCLECI_ORG = "b3e1f0a2-7c4d-4e5f-8a9b-0c1d2e3f4a5b"
AZURE_ORG = "5c0e9b8a-1d2c-4b3a-9f8e-7d6c5b4a3f2e"
BITBUCKET_WORKSPACE_UUID = "{6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}"


# -- jobs (what each provider's claims derive from) ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CircleCIJob:
    organization_id: str = CIRCLECI_ORG
    project_id: str = "e4f5a6b7-c8d9-4e0f-a1b2-c3d4e5f6a7b8"
    user_id: str = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
    vcs_origin: str = "github.com/octo-org/web"
    vcs_ref: str = "refs/heads/main"
    context_ids: tuple[str, ...] = ("a74579f1-2e7d-451e-b009-5c082ad2729e",)
    ssh_rerun: bool = False


@dataclass(frozen=True, kw_only=True)
class BuildkiteJob:
    organization_slug: str = "acme-inc"
    organization_id: str = "0184990a-477b-4fa8-9968-496074483c77"
    pipeline_slug: str = "web-deploy"
    pipeline_id: str = "0184990a-4782-42b5-afc1-16715b10b110"
    build_number: int = 5
    build_branch: str = "main"
    build_tag: str | None = None
    build_commit: str = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
    step_key: str | None = "deploy"
    build_source: str = "webhook"
    runner_environment: str = "self-hosted"
    optional_claims: tuple[str, ...] = ("organization_id", "pipeline_id")  # --claim ...


@dataclass(frozen=True, kw_only=True)
class BitbucketJob:
    account_uuid: str = "{1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b}"
    workspace_uuid: str = BITBUCKET_WORKSPACE_UUID
    repository_uuid: str = "{437da666-7aab-4b60-a947-ec542536ca0d}"
    pipeline_uuid: str = "{9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}"
    step_uuid: str = "{2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f}"
    deployment_environment_uuid: str | None = "{7e6d5c4b-3a29-4180-9f8e-7d6c5b4a3928}"
    branch_name: str = "main"


@dataclass(frozen=True, kw_only=True)
class AzureDevOpsJob:
    organization: str = "contoso"
    project: str = "web"
    pipeline: str = "web-deploy"
    organization_id: str = AZURE_ORG
    project_id: str = "8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d"
    definition_id: str = "17"
    repository_id: str = "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
    repository_ref: str = "refs/heads/main"
    commit: str = "714a629c0b401fdce83e847fc9589983fc6f46bc"
    run_id: str = "5511"


@dataclass(frozen=True, kw_only=True)
class JenkinsJob:
    job_path: tuple[str, ...] = ("web", "main")  # folder/multibranch project, then the job
    build_number: int = 42


# -- claim sets (pure) --------------------------------------------------------------------------


def circleci_claims(job: CircleCIJob, *, issuer: str, audience: str | list[str] | None,
                    now: int) -> Claims:
    """$CIRCLE_OIDC_TOKEN_V2: aud is the organization id unless `circleci run oidc get`
    asked for another; exp is one hour after iat."""
    subject = (f"org/{job.organization_id}/project/{job.project_id}/user/{job.user_id}"
               f"/vcs-origin/{job.vcs_origin}/vcs-ref/{job.vcs_ref}")
    return {"iss": issuer, "sub": subject, "aud": audience or job.organization_id,
            "iat": now, "exp": now + 3600,
            "oidc.circleci.com/project-id": job.project_id,
            "oidc.circleci.com/vcs-origin": job.vcs_origin,
            "oidc.circleci.com/vcs-ref": job.vcs_ref,
            "oidc.circleci.com/context-ids": list(job.context_ids),
            "oidc.circleci.com/ssh-rerun": job.ssh_rerun}


def buildkite_claims(job: BuildkiteJob, *, issuer: str, audience: str | list[str] | None,
                     now: int) -> Claims:
    """`buildkite-agent oidc request-token`: aud defaults to https://buildkite.com/ORG_SLUG,
    exp to five minutes; organization_id and pipeline_id only when asked for (--claim)."""
    ref = f"refs/tags/{job.build_tag}" if job.build_tag else f"refs/heads/{job.build_branch}"
    subject = (f"organization:{job.organization_slug}:pipeline:{job.pipeline_slug}:ref:{ref}"
               f":commit:{job.build_commit}:step:{job.step_key or ''}")
    claims: Claims = {
        "iss": issuer, "sub": subject,
        "aud": audience or f"https://buildkite.com/{job.organization_slug}",
        "iat": now, "nbf": now, "exp": now + 300, "jti": str(uuid.uuid4()),
        "organization_slug": job.organization_slug, "pipeline_slug": job.pipeline_slug,
        "build_number": job.build_number, "build_branch": job.build_branch,
        "build_tag": job.build_tag, "build_commit": job.build_commit,
        "step_key": job.step_key, "job_id": str(uuid.uuid4()), "agent_id": str(uuid.uuid4()),
        "build_source": job.build_source, "runner_environment": job.runner_environment,
    }
    optional = {"organization_id": job.organization_id, "pipeline_id": job.pipeline_id}
    return claims | {name: optional[name] for name in job.optional_claims}


def bitbucket_claims(job: BitbucketJob, *, issuer: str, audience: str | list[str] | None,
                     now: int) -> Claims:
    """BITBUCKET_STEP_OIDC_TOKEN of a step with `oidc: true`; aud defaults to
    ari:cloud:bitbucket::workspace/UUID (without braces)."""
    middle = [job.deployment_environment_uuid] if job.deployment_environment_uuid else []
    subject = ":".join([job.repository_uuid, *middle, job.step_uuid])
    claims: Claims = {
        "iss": issuer, "sub": subject,
        "aud": audience or f"ari:cloud:bitbucket::workspace/{job.workspace_uuid.strip('{}')}",
        "iat": now, "exp": now + 3600,
        "accountUuid": job.account_uuid, "workspaceUuid": job.workspace_uuid,
        "repositoryUuid": job.repository_uuid, "pipelineUuid": job.pipeline_uuid,
        "stepUuid": job.step_uuid, "branchName": job.branch_name,
    }
    if job.deployment_environment_uuid:
        claims["deploymentEnvironmentUuid"] = job.deployment_environment_uuid
    return claims


def azure_devops_claims(job: AzureDevOpsJob, *, issuer: str,
                        audience: str | list[str] | None, now: int) -> Claims:
    """The job's token from the oidctoken REST API (no service connection): sub is
    p://ORG/PROJECT/PIPELINE and aud api://AzureADTokenExchange."""
    return {
        "jti": str(uuid.uuid4()), "sub": f"p://{job.organization}/{job.project}/{job.pipeline}",
        "aud": audience or "api://AzureADTokenExchange", "org_id": job.organization_id,
        "prj_id": job.project_id, "def_id": job.definition_id, "rpo_id": job.repository_id,
        "rpo_uri": f"https://dev.azure.com/{job.organization}/{job.project}/_git/{job.project}",
        "rpo_ver": job.commit, "rpo_ref": job.repository_ref, "run_id": job.run_id,
        "iss": issuer, "nbf": now - 600, "exp": now + 600, "iat": now,
    }


def jenkins_claims(job: JenkinsJob, *, issuer: str, audience: str | list[str] | None,
                   now: int) -> Claims:
    """The plugin's default build claims: sub is the job's URL, build_number an integer; aud
    is the credential's audience (kubegate needs one); the lifetime one hour."""
    root = issuer.removesuffix("/oidc")
    subject = root + "/" + "".join(f"job/{name}/" for name in job.job_path)
    return {"iss": issuer, "aud": audience or "kubegate", "sub": subject,
            "build_number": job.build_number, "iat": now, "exp": now + 3600}


# -- the issuers ------------------------------------------------------------------------------

ClaimBuilder = Callable[..., Claims]


@dataclass(frozen=True, kw_only=True)
class Shape:
    """A provider's issuer path and claim builder, and the job its tokens describe by default."""

    kind: str
    path: str
    job: Any
    claims: ClaimBuilder
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


SHAPES: dict[str, Shape] = {
    "circleci": Shape(kind="circleci", path=f"/org/{CIRCLECI_ORG}", job=CircleCIJob(),
                      claims=circleci_claims,
                      variants={"another-branch": {"vcs_ref": "refs/heads/feature"},
                                "another-project": {"project_id": "f0e1d2c3-b4a5-4697-8877-"
                                                                  "665544332211"}}),
    "buildkite": Shape(kind="buildkite", path="", job=BuildkiteJob(), claims=buildkite_claims,
                       variants={"another-branch": {"build_branch": "feature"},
                                 "another-pipeline": {"pipeline_id": "0184990a-0000-4000-8000-"
                                                                     "000000000001"}}),
    "bitbucket": Shape(kind="bitbucket",
                       path="/2.0/workspaces/acme/pipelines-config/identity/oidc",
                       job=BitbucketJob(), claims=bitbucket_claims,
                       variants={"another-branch": {"branch_name": "feature"},
                                 "another-repository": {"repository_uuid": "{00000000-1111-4222-"
                                                                           "8333-444444444444}"}}),
    "azure-devops": Shape(kind="azure-devops", path=f"/{AZURE_ORG}", job=AzureDevOpsJob(),
                          claims=azure_devops_claims,
                          variants={"another-branch": {"repository_ref": "refs/heads/feature"},
                                    "another-repository": {"repository_id": "00000000-aaaa-4bbb-"
                                                                            "8ccc-dddddddddddd"}}),
    "jenkins": Shape(kind="jenkins", path="/oidc", job=JenkinsJob(), claims=jenkins_claims,
                     variants={"another-branch": {"job_path": ("web", "feature")},
                               "another-job": {"job_path": ("other", "main")}}),
}


class CIIssuer(OIDCIssuer):
    """One of SHAPES on loopback: `url` ends with the provider's issuer path, and discovery and
    the JWKS are served under it."""

    def __init__(self, ca: TestCA, provider: str, *, folder: Path | None = None) -> None:
        super().__init__(ca, folder=folder)
        self.shape = SHAPES[provider]

    @property
    def url(self) -> str:
        return super().url + self.shape.path

    @property
    def default_job(self) -> Any:
        return self.shape.job

    def job(self, variant: str | None = None, **changes: Any) -> Any:
        """The default job, changed by a named near-miss variant and then by `changes`."""
        base = replace(self.shape.job, **self.shape.variants[variant]) if variant else \
            self.shape.job
        return replace(base, **changes)

    def mint(self, job: Any = None, *, audience: str | list[str] | None = None,
             now: float | None = None, extra_claims: Mapping[str, object] | None = None,
             drop_claims: Iterable[str] = ()) -> str:
        claims = self.shape.claims(job or self.shape.job, issuer=self.url, audience=audience,
                                   now=issued_at(now))
        return self.sign(tamper_claims(claims, extra_claims, drop_claims))

    def _routes(self) -> dict[str, Route]:
        path = self.shape.path
        return {path + DISCOVERY_PATH: self._serve_discovery,
                path + self.jwks_path: self._serve_jwks}
