"""The Kubernetes API as kubegate uses it: a small port, and its adapter over the official
client. Nothing outside this package imports `kubernetes`."""
