"""Lints for mappings that admit people (ID tokens of an organisation's OIDC provider), and
how such a mapping or issuer is recognised.

- `email` matched (with any operator) without `{claim: email_verified, equals: true}`: an
  unverified address can be set by its owner to anyone's, so it proves nothing;
- a self-issued grant whose `user` is a constant: everyone the mapping admits becomes one
  Kubernetes user, whom the cluster's audit log and RBAC cannot tell apart.

A mapping is for people when its conditions name an ID-token claim people have (`groups`,
`email`, `email_verified`, `preferred_username`) or its issuer is a people IdP (`lint.provider_of`,
which also uses `is_people_host` and the issuer's name). Pure: a mapping in, messages out.
"""

from __future__ import annotations

from typing import Final

from exchanger.mappings.conditions import Condition, Operator
from exchanger.mappings.model import TrustMapping
from exchanger.mappings.subjects import ClaimReference
from kubegate.grammar import shown

PEOPLE_CLAIMS: Final = frozenset({"groups", "email", "email_verified", "preferred_username"})
"""Claims of a person's ID token: a mapping that names one admits people."""
PEOPLE_HOSTS: Final = ("okta.com", "oktapreview.com", "auth0.com", "accounts.google.com",
                       "login.microsoftonline.com", "onelogin.com")
PEOPLE_ISSUER_WORDS: Final = ("dex", "okta", "keycloak", "auth0", "oidc")
VERIFIED_EMAIL: Final = Condition(path=("email_verified",), operator=Operator.EQUALS,
                                  expected=True)


def is_people_host(host: str, path: str) -> bool:
    """Whether an issuer URL is a known people IdP's: Okta, Auth0, Google, Entra ID, OneLogin,
    a Keycloak realm, or a host named dex."""
    return (any(host == known or host.endswith("." + known) for known in PEOPLE_HOSTS)
            or "/realms/" in path or "dex" in host.split(".")[0])


def lint_people(mapping: TrustMapping, people_issuer: bool) -> list[str]:
    """Warnings about a mapping for people; `people_issuer` when its issuer is a people IdP."""
    return [*_unverified_email(mapping), *_one_user_for_everyone(mapping, people_issuer)]


def _top_claims(mapping: TrustMapping) -> set[str]:
    return {c.path[0] for c in mapping.conditions if len(c.path) == 1}


def _unverified_email(mapping: TrustMapping) -> list[str]:
    if "email" not in _top_claims(mapping) or VERIFIED_EMAIL in mapping.conditions:
        return []
    return ["email is matched without {claim: email_verified, equals: true}: an unverified "
            "email can be set by its owner to anyone's address; add email_verified equals true"]


def _one_user_for_everyone(mapping: TrustMapping, people_issuer: bool) -> list[str]:
    user = mapping.grant.user
    people = people_issuer or bool(_top_claims(mapping) & PEOPLE_CLAIMS)
    if not people or user is None or isinstance(user, ClaimReference):
        return []
    return [f"grant.user is the constant {shown(user)}: everyone this mapping admits becomes "
            "the same Kubernetes user, so the cluster's audit log and RBAC cannot tell them "
            "apart; take user from a claim: {claim: email, prefix: \"oidc:\"}"]
