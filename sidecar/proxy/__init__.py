"""Proxy mode: the sidecar relays a job's Kubernetes API requests with the credential injected.

    proxy = ApiProxy(keeper.current, "127.0.0.1:0", recorder=session_log.append)
    proxy.start()          # kubeconfig: server: http://<proxy.address>, no user credentials
    ...
    proxy.stop()

The HTTP/1.1 (parsing, smuggling refusal, header rules, re-framing, upgrades, back-pressure)
is the shared sans-IO engine `kubegate.http`. Modules here: `upstream` (verified TLS to the
apiserver), `listener` (loopback or Unix socket), `pump` (the sockets under the engine's
relay), `exchange` (one request: credential, policy, error answers), `record` (session
records, metrics), `server` (`ApiProxy`), `errors` (no credential).
"""

from sidecar.proxy.server import ApiProxy

__all__ = ["ApiProxy"]
