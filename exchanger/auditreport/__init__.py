"""What was brokered against what the cluster saw: kubegate's audit lines joined with the
Kubernetes audit log by credential id, the actions that went around the broker, and the
least privilege each session actually needed.

- `model`: the values every part shares (sessions, cluster events, joined actions, findings,
  problems, the report);
- `kubegate_log`: the sessions in kubegate audit logs (several replicas' files);
- `cluster_log`: Kubernetes audit events (audit.k8s.io/v1 JSON lines, rotated and gzipped
  files), streamed, with malformed lines reported by file and line;
- `privileged`: which actions are privileged (exec, attach, port-forward, Secret reads,
  RBAC/admission/CRD changes, namespace deletion);
- `join`: the streaming report builder with its filters;
- `bypass`: actions that went around the broker;
- `leastpriv`: the Role that would have been enough, and the difference from today's rights;
- `render`: terminal summary and JSON; `html`: one self-contained HTML file;
- `sink`: `kubegate audit sink`, the API server's audit webhook backend, joining live.
"""
