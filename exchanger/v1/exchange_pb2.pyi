import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExchangeRequest(_message.Message):
    __slots__ = ("subject_token", "subject_token_type", "role", "requested_lifetime", "audiences")
    SUBJECT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    subject_token: str
    subject_token_type: str
    role: str
    requested_lifetime: _duration_pb2.Duration
    audiences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_token: _Optional[str] = ..., subject_token_type: _Optional[str] = ..., role: _Optional[str] = ..., requested_lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., audiences: _Optional[_Iterable[str]] = ...) -> None: ...

class ExchangeResponse(_message.Message):
    __slots__ = ("credential", "credential_type", "expires_at", "token_id", "session_id", "mapping", "cluster")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    credential: str
    credential_type: str
    expires_at: _timestamp_pb2.Timestamp
    token_id: str
    session_id: str
    mapping: str
    cluster: ClusterAccess
    def __init__(self, credential: _Optional[str] = ..., credential_type: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., token_id: _Optional[str] = ..., session_id: _Optional[str] = ..., mapping: _Optional[str] = ..., cluster: _Optional[_Union[ClusterAccess, _Mapping]] = ...) -> None: ...

class ClusterAccess(_message.Message):
    __slots__ = ("name", "server", "certificate_authority_data", "namespace", "service_account", "user", "groups")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_AUTHORITY_DATA_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    server: str
    certificate_authority_data: bytes
    namespace: str
    service_account: str
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., server: _Optional[str] = ..., certificate_authority_data: _Optional[bytes] = ..., namespace: _Optional[str] = ..., service_account: _Optional[str] = ..., user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...
