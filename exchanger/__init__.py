"""kubegate's exchanger: verify a subject token, match it to a trust mapping, issue a
short-lived Kubernetes credential, and record the decision."""
