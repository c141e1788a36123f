"""The I/O under the sans-IO HTTP engine (`kubegate.http`), shared by the sidecar's API proxy
and the server-side gateway: `connections` (a TCP listener, the accept loop with its
connection cap and one thread per connection, and the per-connection socket tracker that
`stop()` or a session's end aborts), `head` (a client's request head by its deadline),
`pump` (the client's and the upstream's sockets in one selector loop under a `Relay`, with an
optional hook that sees tunnelled bytes) and `upstream` (verified TLS connections to an API
server, with resumed sessions).

Rules of this package:
- `kubegate.http` stays sans-IO (an import-linter contract checks it): sockets, TLS, threads
  and clocks live here, HTTP parsing never does;
- it imports the standard library and `kubegate.http` only, never `exchanger`, `sidecar` or
  the commands.
"""
