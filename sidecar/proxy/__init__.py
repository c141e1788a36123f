"""Proxy mode: the sidecar relays a job's Kubernetes API requests with the credential injected.

    proxy = ApiProxy(keeper.current, "127.0.0.1:0", recorder=session_log.append)
    proxy.start()          # kubeconfig: server: http://<proxy.address>, no user credentials
    ...
    proxy.stop()

Modules: `headers` (pure head parsing and rewriting), `wire` (reader, body relay, pump),
`upstream` (verified TLS to the apiserver), `listener` (loopback or Unix socket),
`exchange` (one request), `record` (session records, metrics), `server` (`ApiProxy`).
"""

from sidecar.proxy.server import ApiProxy

__all__ = ["ApiProxy"]
