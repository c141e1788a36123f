"""Proxy mode: the sidecar relays a job's Kubernetes API requests with the credential injected,
so the job's kubectl points at the proxy and never holds a token. Modules: `listener`
(loopback or Unix socket), `forward` (one request: who may call, credential, error
answers), `record` (session records, metrics), `server` (`ApiProxy`, the connection cap),
`errors` (no credential). The accept loop and connection threads, the head read, the
sockets under the engine's relay and the verified TLS to the apiserver are the shared
`kubegate.relayio` (the gateway uses them too).

    proxy = ApiProxy(keeper.current, "127.0.0.1:0", recorder=session_log.append)
    proxy.start()          # kubeconfig: server: http://<proxy.address>, no user credentials
    ...
    proxy.stop()

Rules of this package:
- the HTTP/1.1 (parsing, smuggling refusal, header rules, re-framing, upgrades, back-pressure)
  is the shared sans-IO engine `kubegate.http`; this package does the I/O and the policy, and
  parses no HTTP of its own;
- it imports the shared package only, never the exchanger or the commands.
"""

from sidecar.proxy.server import ApiProxy

__all__ = ["ApiProxy"]
