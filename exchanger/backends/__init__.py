"""Issuance backends: turn an allowed exchange into a short-lived Kubernetes credential."""
