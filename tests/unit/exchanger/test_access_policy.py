"""A mapping's `approval` and `windows`: parsed into values, every problem named by its field,
and the same shapes accepted by the JSON schema and the TrustMapping CRD."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import jsonschema
import pytest
import yaml

from exchanger.access.policy import ApprovalPolicy, Approvers, Reuse
from exchanger.access.windows import OneOffWindow, RecurringWindow
from exchanger.mappings.access_lints import (
    access_errors,
    access_warnings,
    backend_of,
    describe_access,
)
from exchanger.mappings.conditions import Condition, Operator
from exchanger.mappings.crd import trust_mapping_crd
from exchanger.mappings.lint import lint_mapping
from exchanger.mappings.schema import TRUST_MAPPING_SCHEMA
from exchanger.mappings.validate import parse_mapping

DOCUMENT = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: break-glass}
spec:
  issuer: corp
  claims: [{claim: groups, contains: oncall}]
  grant: {cluster: prod, namespace: kube-system, serviceAccount: cluster-admin}
  approval:
    approvers:
      issuer: corp
      claims: [{claim: groups, contains: sre-leads}]
    count: 2
    allowSelfApproval: false
    reasonRequired: true
    ticketPattern: 'INC-[0-9]+'
    maxDuration: 2h
    reuse: single
    bindTo: [run_id, run_attempt, sha]
  windows:
  - {start: "2026-12-05T22:00:00Z", end: "2026-12-06T04:00:00+01:00"}
  - {days: [Sat, Sun], from: "22:00", to: "04:00", timeZone: Europe/Berlin}
"""


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT)
    return loaded


def parsed(raw: dict[str, Any]) -> Any:
    return parse_mapping(raw, source="m.yaml", issuers=frozenset({"corp", "vendor"}))


def problems_of(change: dict[str, Any], where: str = "approval") -> list[str]:
    raw = document()
    raw["spec"][where] = change if where == "windows" else raw["spec"][where] | change
    mapping, problems = parsed(raw)
    assert mapping is None
    return [problem.removeprefix("m.yaml (break-glass): ") for problem in problems]


def test_every_approval_field_is_read() -> None:
    mapping, problems = parsed(document())
    assert problems == []
    assert mapping.approval == ApprovalPolicy(
        approvers=Approvers(issuer="corp", conditions=(
            Condition(path=("groups",), operator=Operator.CONTAINS, expected="sre-leads"),)),
        count=2, allow_self_approval=False, reason_required=True, ticket_pattern="INC-[0-9]+",
        max_duration=7200, reuse=Reuse.SINGLE, bind_to=("run_id", "run_attempt", "sha"))
    assert mapping.approval.ticket_matches("INC-42")
    assert not mapping.approval.ticket_matches("INC-42 and more")


def test_approval_defaults_and_no_approval() -> None:
    raw = document()
    raw["spec"]["approval"] = {"approvers": raw["spec"]["approval"]["approvers"]}
    mapping, _ = parsed(raw)
    policy = mapping.approval
    assert (policy.count, policy.allow_self_approval, policy.reason_required,
            policy.ticket_pattern, policy.max_duration, policy.reuse, policy.bind_to) == (
        1, False, True, "", 3600, Reuse.DURATION, ())
    assert policy.ticket_matches("anything")
    del raw["spec"]["approval"], raw["spec"]["windows"]
    mapping, _ = parsed(raw)
    assert (mapping.approval, mapping.windows) == (None, ())


def test_windows_are_read_in_utc_and_wall_clock() -> None:
    mapping, _ = parsed(document())
    one_off, weekly = mapping.windows
    assert one_off == OneOffWindow(
        start=int(dt.datetime(2026, 12, 5, 22, tzinfo=dt.UTC).timestamp()),
        end=int(dt.datetime(2026, 12, 6, 3, tzinfo=dt.UTC).timestamp()))
    assert weekly == RecurringWindow(days=(5, 6), start=dt.time(22), end=dt.time(4),
                                     zone="Europe/Berlin")


@pytest.mark.parametrize(("change", "expected"), [
    ({"count": 6}, "spec.approval.count: expected a whole number from 1 to 5, got 6"),
    ({"count": "2"}, "spec.approval.count: expected a whole number from 1 to 5, got '2'"),
    ({"allowSelfApproval": "no"}, "spec.approval.allowSelfApproval: expected true or false"),
    ({"reasonRequired": 1}, "spec.approval.reasonRequired: expected true or false"),
    ({"ticketPattern": "INC-("}, "spec.approval.ticketPattern: "),
    ({"ticketPattern": 5}, "spec.approval.ticketPattern: expected a string"),
    ({"maxDuration": "25h"}, "spec.approval.maxDuration: must be more than 0s and at most 24h"),
    ({"maxDuration": "soon"}, "spec.approval.maxDuration: expected a duration"),
    ({"reuse": "twice"}, "spec.approval.reuse: expected duration or single"),
    ({"bindTo": "run_id"}, "spec.approval.bindTo: expected a list of strings"),
    ({"bindTo": ["sha", "sha"]}, "spec.approval.bindTo[1]: duplicate 'sha'"),
    ({"approvers": {"issuer": "nobody", "claims": [{"claim": "g", "equals": "x"}]}},
     "spec.approval.approvers.issuer: unknown issuer 'nobody'"),
    ({"approvers": {"issuer": "corp"}}, "spec.approval.approvers.claims: at least one"),
    ({"approvers": {"issuer": "corp", "claims": [{"claim": "g", "like": "x"}]}},
     "spec.approval.approvers.claims[0].like: unknown field"),
    ({"approver": {}}, "spec.approval.approver: unknown field"),
])
def test_approval_problems_name_their_field(change: dict[str, Any], expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems_of(change)), \
        problems_of(change)


def test_approval_needs_approvers() -> None:
    raw = document()
    del raw["spec"]["approval"]["approvers"]
    assert "spec.approval.approvers: required" in " ".join(parsed(raw)[1])


@pytest.mark.parametrize(("windows", "expected"), [
    ({"start": "x"}, "spec.windows: expected a list of windows"),
    ([{"start": "2026-12-05T22:00:00Z"}], "spec.windows[0].end: required"),
    ([{"start": "2026-12-05T22:00:00", "end": "2026-12-06T04:00:00Z"}],
     "spec.windows[0].start: needs a date, a time and an offset"),
    ([{"start": "2026-12-06T22:00:00Z", "end": "2026-12-06T04:00:00Z"}],
     "spec.windows[0].end: must be after start"),
    ([{"start": dt.datetime(2026, 12, 5, tzinfo=dt.UTC), "end": "2026-12-06T04:00:00Z"}],
     "spec.windows[0].start: expected an RFC 3339 date-time"),
    ([{"days": ["Saturday"], "from": "22:00", "to": "04:00"}],
     "spec.windows[0].days: expected days among Mon"),
    ([{"days": [], "from": "22:00", "to": "04:00"}], "spec.windows[0].days: expected days"),
    ([{"from": 1320, "to": "04:00"}], "spec.windows[0].from: expected a wall-clock time"),
    ([{"from": "22:00", "to": "24:00"}], "spec.windows[0].to: expected a wall-clock time"),
    ([{"from": "22:00"}], "spec.windows[0].to: required"),
    ([{"from": "22:00", "to": "04:00", "timeZone": "Europe/Atlantis"}],
     "spec.windows[0].timeZone: 'Europe/Atlantis' is not an IANA time zone"),
    ([{"from": "22:00", "to": "04:00", "zone": "UTC"}], "spec.windows[0].zone: unknown field"),
    ([{"start": "2026-12-05T22:00:00Z", "end": "2026-12-06T04:00:00Z", "days": ["Sat"]}],
     "spec.windows[0].days: unknown field"),
])
def test_window_problems_name_their_field(windows: object, expected: str) -> None:
    found = problems_of(windows, "windows")  # type: ignore[arg-type]
    assert any(problem.startswith(expected) for problem in found), found


def test_a_recurring_window_without_days_is_every_day_in_utc() -> None:
    raw = document()
    raw["spec"]["windows"] = [{"from": "09:00", "to": "17:00"}]
    mapping, _ = parsed(raw)
    assert mapping.windows == (RecurringWindow(days=tuple(range(7)), start=dt.time(9),
                                               end=dt.time(17), zone="UTC"),)


def test_policy_values_check_their_invariants() -> None:
    approvers = Approvers(issuer="corp", conditions=(
        Condition(path=("g",), operator=Operator.EQUALS, expected="x"),))
    for bad in ({"count": 0}, {"max_duration": 0}, {"bind_to": ("a", "a")},
                {"ticket_pattern": "("}):
        with pytest.raises(ValueError):
            ApprovalPolicy(approvers=approvers, **bad)  # type: ignore[arg-type]
    assert approvers.admit("corp", {"g": "x"})
    assert not approvers.admit("vendor", {"g": "x"})
    assert not approvers.admit("corp", {"g": "y"})


@pytest.mark.parametrize("schema", [TRUST_MAPPING_SCHEMA, trust_mapping_crd()["spec"][
    "versions"][0]["schema"]["openAPIV3Schema"]], ids=["file", "crd"])
def test_the_schema_and_the_crd_accept_the_shapes_and_refuse_unknown_ones(
        schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema)
    assert list(validator.iter_errors(document())) == []
    for spec_change in ({"approval": {"count": 9}}, {"windows": [{"from": "22:00"}]},
                        {"windows": [{"days": ["Sa"], "from": "22:00", "to": "04:00"}]},
                        {"approval": {"reuse": "twice"}}):
        raw = copy.deepcopy(document())
        for key, value in spec_change.items():
            raw["spec"][key] = (raw["spec"][key] | value) if isinstance(value, dict) else value
        assert list(validator.iter_errors(raw)), spec_change


# -- lints (mappings validate) and explain -------------------------------------------------


def self_issued(**spec: Any) -> dict[str, Any]:
    raw = document()
    raw["spec"]["grant"] = {"cluster": "prod", "namespace": "kube-system", "user": "admin",
                            "maxLifetime": "15m"}
    raw["spec"] |= spec
    return raw


def test_a_self_issued_approval_mapping_longer_than_ten_minutes_is_an_error() -> None:
    mapping, _ = parsed(self_issued())
    [error] = access_errors(mapping, backend_of(mapping))  # a user grant: selfIssued
    assert error.startswith("spec.grant.maxLifetime: 900s with spec.approval on the selfIssued")
    short, _ = parsed(self_issued(grant=self_issued()["spec"]["grant"] | {"maxLifetime": "10m"}))
    assert access_errors(short, "selfIssued") == []
    account, _ = parsed(document())
    assert backend_of(account) is None and access_errors(account, None) == []
    assert access_errors(account, backend_of(account, {"prod": "tokenRequest"})) == []
    assert access_errors(account, backend_of(account, {"prod": "selfIssued"})) != []
    plain, _ = parsed({**self_issued(), "spec": {k: v for k, v in self_issued()["spec"].items()
                                                 if k not in ("approval", "windows")}})
    assert access_errors(plain, "selfIssued") == []


def test_mappings_validate_reports_the_self_issued_lifetime_as_an_error(tmp_path: Any) -> None:
    from kubegate.commands.mappings import validate_paths

    (tmp_path / "m.yaml").write_text(yaml.safe_dump(self_issued()))
    findings, count = validate_paths([tmp_path], None)
    assert count == 1
    assert [f.level for f in findings if "selfIssued" in f.message] == ["error"]


def test_self_approval_by_possible_approvers_and_ended_windows_are_warnings() -> None:
    raw = document()
    raw["spec"]["approval"]["allowSelfApproval"] = True
    raw["spec"]["windows"] = [{"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}]
    mapping, _ = parsed(raw)
    warnings = access_warnings(mapping, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    assert [w.split(":")[0] for w in warnings] == ["spec.approval", "spec.windows[0]",
                                                   "spec.windows"]
    assert any(w.startswith("spec.approval") for w in lint_mapping(mapping, now=0))
    raw["spec"]["approval"]["approvers"]["claims"] = [{"claim": "team", "equals": "a"}]
    raw["spec"]["claims"] = [{"claim": "team", "equals": "b"}]
    disjoint, _ = parsed(raw)
    assert not any(w.startswith("spec.approval") for w in access_warnings(disjoint, now=0))


def test_explain_shows_the_approval_rules_and_the_next_window() -> None:
    mapping, _ = parsed(document())
    saturday = dt.datetime(2026, 12, 12, 12, tzinfo=dt.UTC).timestamp()  # Sat noon
    lines = describe_access(mapping, saturday)
    text = "\n".join(lines)
    assert "approval: 2 distinct approvals from issuer corp where groups contains" in text
    assert "kubegate access request --role break-glass" in text
    assert ("windows: next opens: 2026-12-12T21:00:00Z to 2026-12-13T03:00:00Z "
            "(Sat 2026-12-12 22:00 CET Europe/Berlin)") in text
    assert "windows: open now" in "\n".join(describe_access(mapping, saturday + 10 * 3600))
