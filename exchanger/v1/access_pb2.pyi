import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessRequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_REQUEST_STATE_UNSPECIFIED: _ClassVar[AccessRequestState]
    ACCESS_REQUEST_STATE_PENDING: _ClassVar[AccessRequestState]
    ACCESS_REQUEST_STATE_APPROVED: _ClassVar[AccessRequestState]
    ACCESS_REQUEST_STATE_ACTIVE: _ClassVar[AccessRequestState]
    ACCESS_REQUEST_STATE_DENIED: _ClassVar[AccessRequestState]
    ACCESS_REQUEST_STATE_EXPIRED: _ClassVar[AccessRequestState]
    ACCESS_REQUEST_STATE_REVOKED: _ClassVar[AccessRequestState]
ACCESS_REQUEST_STATE_UNSPECIFIED: AccessRequestState
ACCESS_REQUEST_STATE_PENDING: AccessRequestState
ACCESS_REQUEST_STATE_APPROVED: AccessRequestState
ACCESS_REQUEST_STATE_ACTIVE: AccessRequestState
ACCESS_REQUEST_STATE_DENIED: AccessRequestState
ACCESS_REQUEST_STATE_EXPIRED: AccessRequestState
ACCESS_REQUEST_STATE_REVOKED: AccessRequestState

class Principal(_message.Message):
    __slots__ = ("issuer", "subject", "who")
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    issuer: str
    subject: str
    who: str
    def __init__(self, issuer: _Optional[str] = ..., subject: _Optional[str] = ..., who: _Optional[str] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approver", "at", "comment")
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    approver: Principal
    at: _timestamp_pb2.Timestamp
    comment: str
    def __init__(self, approver: _Optional[_Union[Principal, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("id", "mapping", "requester", "reason", "ticket", "duration", "bound", "state", "created_at", "approvals", "approvals_required", "decided_by", "decision_reason", "starts_at", "ends_at", "uses", "version")
    class BoundEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECISION_REASON_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    mapping: str
    requester: Principal
    reason: str
    ticket: str
    duration: _duration_pb2.Duration
    bound: _containers.ScalarMap[str, str]
    state: AccessRequestState
    created_at: _timestamp_pb2.Timestamp
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    approvals_required: int
    decided_by: Principal
    decision_reason: str
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    uses: int
    version: str
    def __init__(self, id: _Optional[str] = ..., mapping: _Optional[str] = ..., requester: _Optional[_Union[Principal, _Mapping]] = ..., reason: _Optional[str] = ..., ticket: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bound: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[AccessRequestState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., approvals_required: _Optional[int] = ..., decided_by: _Optional[_Union[Principal, _Mapping]] = ..., decision_reason: _Optional[str] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uses: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class CreateAccessRequestRequest(_message.Message):
    __slots__ = ("role", "reason", "ticket", "duration")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    role: str
    reason: str
    ticket: str
    duration: _duration_pb2.Duration
    def __init__(self, role: _Optional[str] = ..., reason: _Optional[str] = ..., ticket: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetAccessRequestRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListAccessRequestsRequest(_message.Message):
    __slots__ = ("states", "role", "mine_only")
    STATES_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MINE_ONLY_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[AccessRequestState]
    role: str
    mine_only: bool
    def __init__(self, states: _Optional[_Iterable[_Union[AccessRequestState, str]]] = ..., role: _Optional[str] = ..., mine_only: _Optional[bool] = ...) -> None: ...

class ListAccessRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AccessRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AccessRequest, _Mapping]]] = ...) -> None: ...

class WatchAccessRequestsRequest(_message.Message):
    __slots__ = ("since", "role", "mine_only")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MINE_ONLY_FIELD_NUMBER: _ClassVar[int]
    since: str
    role: str
    mine_only: bool
    def __init__(self, since: _Optional[str] = ..., role: _Optional[str] = ..., mine_only: _Optional[bool] = ...) -> None: ...

class AccessRequestEvent(_message.Message):
    __slots__ = ("kind", "request")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    kind: str
    request: AccessRequest
    def __init__(self, kind: _Optional[str] = ..., request: _Optional[_Union[AccessRequest, _Mapping]] = ...) -> None: ...

class ApproveAccessRequestRequest(_message.Message):
    __slots__ = ("id", "comment")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    comment: str
    def __init__(self, id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class DenyAccessRequestRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeAccessRequestRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeAccessRequestResponse(_message.Message):
    __slots__ = ("request", "sessions")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    request: AccessRequest
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, request: _Optional[_Union[AccessRequest, _Mapping]] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "mapping", "cluster", "namespace", "caller", "token_id", "issued_at", "expires_at", "not_after", "revocable", "caller_pod", "access_request", "ci", "active", "ended_at", "end_reason", "ended_by")
    class CiEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    REVOCABLE_FIELD_NUMBER: _ClassVar[int]
    CALLER_POD_FIELD_NUMBER: _ClassVar[int]
    ACCESS_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CI_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    ENDED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    mapping: str
    cluster: str
    namespace: str
    caller: Principal
    token_id: str
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    revocable: bool
    caller_pod: str
    access_request: str
    ci: _containers.ScalarMap[str, str]
    active: bool
    ended_at: _timestamp_pb2.Timestamp
    end_reason: str
    ended_by: Principal
    def __init__(self, id: _Optional[str] = ..., mapping: _Optional[str] = ..., cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., caller: _Optional[_Union[Principal, _Mapping]] = ..., token_id: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revocable: _Optional[bool] = ..., caller_pod: _Optional[str] = ..., access_request: _Optional[str] = ..., ci: _Optional[_Mapping[str, str]] = ..., active: _Optional[bool] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ..., ended_by: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("active_only", "access_request", "cluster")
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    ACCESS_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    active_only: bool
    access_request: str
    cluster: str
    def __init__(self, active_only: _Optional[bool] = ..., access_request: _Optional[str] = ..., cluster: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeSessionRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
