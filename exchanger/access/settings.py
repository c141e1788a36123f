"""The config's `access:` section: where access requests and sessions are kept, who may decide
any request (admins), where lifecycle events are sent (webhooks), and the CI job webhooks that
revoke a finished job's sessions.

```yaml
access:
  store: auto            # auto | sqlite | cluster. auto: cluster when mappingSources.cluster
                         # is set (every replica sees the same requests), else sqlite
  sqliteFile: /var/lib/kubegate/access.db    # default <stateDir>/access.db
  cluster: {name: prod, namespace: kubegate} # default: mappingSources.cluster's
  admins:                # may approve, deny and revoke any request and list every session
  - issuer: corp
    claims: [{claim: groups, contains: platform-admins}]
  notifications:
    webhooks:
    - url: https://hooks.example.com/kubegate
      secretFile: /etc/kubegate/webhook-secret   # HMAC-SHA256 key (X-Kubegate-Signature-256)
      caFile: /etc/kubegate/hooks-ca.pem         # optional; default: system roots
      events: [created, approved, denied, revoked, expired, activated]   # default: all
  ciWebhooks:            # revoke the sessions of a CI job when it ends
    listen: 0.0.0.0:8446 # TLS with the top-level tls files (plaintext only on loopback)
    github: {secretFile: /etc/kubegate/github-webhook-secret}   # X-Hub-Signature-256
    gitlab: {tokenFile: /etc/kubegate/gitlab-webhook-token}     # X-Gitlab-Token
```

Every problem goes to the `Fields` reader with its field; nothing raises for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from exchanger.mappings.conditions import Condition
from exchanger.mappings.validate import parse_conditions
from kubegate.configread import Fields, Report

__all__ = ["EVENTS", "AccessAdmin", "AccessConfig", "CiWebhooks", "StoreLocation", "Webhook",
           "read_access"]

EVENTS: Final = ("created", "approved", "denied", "revoked", "expired", "activated")
"""Lifecycle events of an access request, as webhooks and audit lines name them."""

_SECTION = {"store", "sqliteFile", "cluster", "admins", "notifications", "ciWebhooks"}


@dataclass(frozen=True, kw_only=True)
class AccessAdmin:
    """Tokens of `issuer` whose claims meet every condition may decide any request."""

    issuer: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, kw_only=True)
class StoreLocation:
    """Custom resources in `namespace` of the configured cluster `cluster`."""

    cluster: str
    namespace: str = "kubegate"


@dataclass(frozen=True, kw_only=True)
class Webhook:
    url: str
    secret_file: Path | None = None
    ca_file: Path | None = None
    events: tuple[str, ...] = EVENTS


@dataclass(frozen=True, kw_only=True)
class CiWebhooks:
    listen: str
    github_secret_file: Path | None = None
    gitlab_token_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class AccessConfig:
    store: Literal["sqlite", "cluster"] = "sqlite"
    sqlite_file: Path | None = None  # None only before build_config fills the default
    cluster: StoreLocation | None = None
    admins: tuple[AccessAdmin, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    ci_webhooks: CiWebhooks | None = None


def read_access(read: Fields, data: object, *, base: Path, state_dir: Path,
                issuers: frozenset[str], clusters: frozenset[str],
                mapping_cluster: StoreLocation | None) -> AccessConfig:
    """The `access` section (absent: an SQLite file in the state folder, no admins)."""
    section = read.section(data if data is not None else {}, "access", _SECTION)
    where = "access"
    store = read.string(section, "store", where, "auto")
    if store not in ("auto", "sqlite", "cluster"):
        read.problem(where, f"store: expected auto, sqlite or cluster, got {store!r}")
    location = _location(read, section.get("cluster"), clusters) or mapping_cluster
    chosen: Literal["sqlite", "cluster"] = (
        "cluster" if store == "cluster" or (store == "auto" and location is not None)
        else "sqlite")
    if chosen == "cluster" and location is None:
        read.problem(where, "store cluster: name the cluster (access.cluster or "
                     "mappingSources.cluster)")
    sqlite_file = read.path(section, "sqliteFile", where, base) or state_dir / "access.db"
    return AccessConfig(
        store=chosen, sqlite_file=sqlite_file, cluster=location,
        admins=_admins(read, section.get("admins", []), issuers),
        webhooks=_webhooks(read, section.get("notifications"), base),
        ci_webhooks=_ci_webhooks(read, section.get("ciWebhooks"), base))


def _location(read: Fields, data: object, clusters: frozenset[str]) -> StoreLocation | None:
    if data is None:
        return None
    where = "access.cluster"
    section = read.section(data, where, {"name", "namespace"})
    name = read.string(section, "name", where, required=True)
    if name and name not in clusters:
        read.problem(where, f"name: {name!r} is not a configured tokenRequest cluster")
    return StoreLocation(cluster=name, namespace=read.string(section, "namespace", where,
                                                             "kubegate"))


def _admins(read: Fields, data: object, issuers: frozenset[str]) -> tuple[AccessAdmin, ...]:
    if not isinstance(data, list):
        read.problem("access", "admins: expected a list")
        return ()
    admins = []
    for index, item in enumerate(data):
        where = f"access.admins[{index}]"
        section = read.section(item, where, {"issuer", "claims"})
        issuer = read.string(section, "issuer", where, required=True)
        if issuer and issuer not in issuers:
            read.problem(where, f"issuer: {issuer!r} is not a configured issuer")
        report = Report(where)
        conditions = parse_conditions(section.get("claims"), "claims", report)
        for problem in report.problems:
            read.problem("", problem)
        if issuer and conditions:
            admins.append(AccessAdmin(issuer=issuer, conditions=conditions))
    return tuple(admins)


def _webhooks(read: Fields, data: object, base: Path) -> tuple[Webhook, ...]:
    if data is None:
        return ()
    section = read.section(data, "access.notifications", {"webhooks"})
    items = section.get("webhooks", [])
    if not isinstance(items, list):
        read.problem("access.notifications", "webhooks: expected a list")
        return ()
    hooks = []
    for index, item in enumerate(items):
        where = f"access.notifications.webhooks[{index}]"
        hook = read.section(item, where, {"url", "secretFile", "caFile", "events"})
        url = read.string(hook, "url", where, required=True)
        parts = urlsplit(url)
        if url and (parts.scheme not in ("https", "http") or not parts.hostname):
            read.problem(where, "url: expected an https URL")
        events = read.strings(hook, "events", where) if "events" in hook else EVENTS
        unknown = sorted(set(events) - set(EVENTS))
        if unknown:
            read.problem(where, f"events: unknown {', '.join(unknown)} (known: "
                         f"{', '.join(EVENTS)})")
        hooks.append(Webhook(url=url, secret_file=read.path(hook, "secretFile", where, base),
                             ca_file=read.path(hook, "caFile", where, base),
                             events=tuple(events)))
    return tuple(hooks)


def _ci_webhooks(read: Fields, data: object, base: Path) -> CiWebhooks | None:
    if data is None:
        return None
    where = "access.ciWebhooks"
    section = read.section(data, where, {"listen", "github", "gitlab"})
    listen = read.address(section, "listen", where, unix=False)
    if not listen:
        read.problem(where, "listen: required")
    github = read.section(section.get("github", {}), f"{where}.github", {"secretFile"})
    gitlab = read.section(section.get("gitlab", {}), f"{where}.gitlab", {"tokenFile"})
    hooks = CiWebhooks(
        listen=listen,
        github_secret_file=read.path(github, "secretFile", f"{where}.github", base),
        gitlab_token_file=read.path(gitlab, "tokenFile", f"{where}.gitlab", base))
    if hooks.github_secret_file is None and hooks.gitlab_token_file is None:
        read.problem(where, "needs github.secretFile or gitlab.tokenFile")
    return hooks
