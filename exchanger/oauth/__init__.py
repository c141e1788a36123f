"""OAuth 2.0 Token Exchange (RFC 8693) over HTTPS, beside gRPC: the same `Exchanger`, so the
same verification, trust mappings, rate limits and audit line (its `peer` is `https:HOST:PORT`).

Modules: `form` (a strict token-exchange request from a form body), `errors` (kubegate
errors as OAuth errors and HTTP statuses, the one table), `metadata` (RFC 8414), `gate`
(`requested_token_type` against the mapping's backend), `endpoint` (routes: request in,
answer out, pure), `wire` (one HTTP/1.1 cycle on h11 behind `kubegate.http.strict`, sans-IO)
and `server` (sockets, TLS and threads).
"""
