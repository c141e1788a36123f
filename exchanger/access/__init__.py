"""Just-in-time access: requests that need approval, time windows, and the sessions they open.

- `model`: the values (AccessRequest, Approval, Requester, Session) and their states;
- `ports`: what stores them (`AccessStore`, `SessionStore`) and the errors stores raise;
- `settings`: the config's `access:` section;
- `policy`, `windows`, `lifecycle`, `gate`: the mapping's approval rules and windows, the pure
  state transitions, and the check an exchange of an approval mapping passes;
- `sqlite_store`, `kube_store`: the two stores (an SQLite file on the embedded default,
  AccessRequest and KubegateSession custom resources when the exchanger runs against a cluster);
- `service`: the gRPC AccessService and SessionService; `notify`: outgoing webhooks;
  `ciwebhooks`: revocation when a CI job ends.
"""
