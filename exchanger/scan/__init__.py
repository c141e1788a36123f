"""`kubegate scan`: standing privilege in a cluster, and paths around the broker.

The layers, outermost last:
- `model.py`: severities, rules, findings and what the scan could not see (values only);
- `rules.py`: the rule catalogue (id, severity, what, fix), the one place a rule is described;
- `subjects.py`: RBAC subjects, the identities a SubjectAccessReview asks about, and who is a
  system component or the exchanger;
- `candidates.py`: pure: which bindings might grant a permission (aggregation resolved);
- `review.py`: the SubjectAccessReview port and its Kubernetes adapter (every "can" asked of the
  real API server, never evaluated here);
- `cluster.py`: the read-only listing port and its Kubernetes adapter (a refusal becomes a
  `CouldNotSee`, never an empty list);
- `targets.py`: what trust mappings grant, as the scan needs it;
- `checks.py`, `checks_rbac.py`: the findings;
- `render.py`, `sarif.py`: table, JSON and SARIF 2.1.0.

Rules of this package: read-only (lists and SubjectAccessReviews, nothing else); a secret's
data is never kept or printed; a scan that could not see something never reads as clean.
"""
