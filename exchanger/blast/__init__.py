"""The blast radius of trust mappings: who a mapping admits, in words, and what those
identities may then do on the cluster, as the API server itself answers it.

- `identities`: a mapping's claim conditions as words ("any branch of octo-org/web");
- `rights`: effective rights as comparable values (verb, group, resource, namespace or
  cluster), derived from SelfSubjectRulesReviews behind a small port, and which rights are
  sensitive;
- `kube`: that port over the official client, impersonating the granted identity;
- `diff`: one mapping's radius, and what each mapping gains or loses between two sets;
- `render`: changes and radii as text (one line each), markdown (a pull-request comment) and
  JSON.

Only `kube` does I/O; the rest are pure functions of mappings and review answers.
"""
