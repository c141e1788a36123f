"""`kubegate serve --workers N`: N exchanger processes on one port, under a pre-fork parent,
so one replica uses every core (Python's GIL keeps one process on one).

How the parts of one replica are kept when there are N processes:
- listening: the parent reserves the ports (a bound, never listening SO_REUSEPORT socket)
  and each worker's gRPC server and token endpoint listen on them with SO_REUSEPORT; the
  kernel spreads new connections among the workers (a connection stays with its worker);
- workers are fork+exec'd `kubegate serve --worker-index I` (never a fork of a process that
  runs gRPC threads) and report to the parent on their standard output (`worker`);
- audit: one hash chain per worker, in its own file (`audit.w<I>.log` beside `auditLog`,
  `exchanger.audit.workerfiles`); `kubegate audit verify` and the report find them all;
  checkpoints (one signed chain) need `--workers 1`;
- rate limits: per worker, the per-identity limit divided by N (`role`);
- issuer keys and mapping reloads: each worker fetches and reloads on its own (N fetches per
  refresh; a worker may see a changed mapping folder up to one `reloadInterval` apart);
- once per replica, in worker 0 only: session reaper, request expirer, CI job webhook
  listener, self-issued discovery; notifications go out from the worker whose request made
  the event (each event once);
- metrics: prometheus_client multiprocess mode, one /metrics on the parent (`parent`);
  health: the parent's health-only listener reflects the workers;
- a worker that dies is started again with back-off while the others keep the port
  answering (`supervisor`); SIGTERM on the parent drains and stops every worker, exit 0;
- `--workers 1` runs no parent: the single process, as before.
"""
