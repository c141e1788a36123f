"""The gateway's identity half, assembled from the config alone: the issuers' key cache (the
exchanger's fetcher, Kubernetes clusters' keys through kubegate's clients), the trust mapping
sources (files or TrustMapping resources, reloaded like the exchanger's), the access and
session stores (`access.store`), the `SessionWatch` and the `GatewayAuthenticator`.

    identity = start_identity(config)          # ConfigError: bad mappings, unreadable key
    identity.ends.subscribe(on_session_end)
    identity.authenticator.authenticate(token)
    identity.stop()                            # the watch, the mapping watchers, the clients

Rules of this module: everything it starts is stopped by `stop()` in reverse order, and a
failure while starting stops what was started before it is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exchanger.access.stores import open_stores
from exchanger.config import Config
from exchanger.gateway.ends import SessionWatch
from exchanger.gateway.identity import GatewayAuthenticator, build_authenticator
from exchanger.mapping_sources import build_mapping_sources
from exchanger.mappings.store import ReloadResult
from exchanger.server import ClusterReviewer, cluster_clients, key_fetcher
from exchanger.verify.keys import KeyCache

__all__ = ["GatewayIdentity", "start_identity"]


@dataclass(kw_only=True)
class GatewayIdentity:
    authenticator: GatewayAuthenticator
    ends: SessionWatch
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def stop(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


def start_identity(config: Config, clock: Callable[[], float] = time.time) -> GatewayIdentity:
    """Build and start the identity half for `config.gateway` (see the module)."""
    settings = config.gateway
    if settings is None:
        raise ValueError("the config has no gateway section")
    clients = cluster_clients(config)
    closers: list[Callable[[], Any]] = [client.close for client in clients.values()]
    try:
        sources = build_mapping_sources(config, _ignore_reload)
        sources.start()
        closers.append(sources.stop)
        requests, sessions = open_stores(config.access, lambda name: clients[name].api_client)
        watch = SessionWatch(sessions, cluster=settings.cluster, clock=clock)
        authenticator = build_authenticator(
            config, keys=KeyCache(key_fetcher(clients), clock), mappings=sources.store,
            requests=requests, sessions=sessions, ends=watch, clock=clock,
            reviewer=ClusterReviewer(clients) if any(i.token_review for i in config.issuers)
            else None)
        watch.start()
        closers.append(watch.stop)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return GatewayIdentity(authenticator=authenticator, ends=watch, closers=closers)


def _ignore_reload(result: ReloadResult) -> None:
    """Mapping reloads are logged by the store; the gateway keeps no metrics of them yet."""
