"""The recorder's errors, under kubegate's one root. None reaches a client: a protocol
violation stops one stream's recording (its text becomes the cast's last marker and a log
line), a store error is logged by the proxy, a read error is printed by `kubegate sessions`.

Rules of this module: `str()` of an error is its message alone, and a message never holds
stream content (a token typed at a prompt would otherwise reach a log).
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from kubegate.errors import Code, KubegateError


class RecordingError(KubegateError):
    code = Code.INTERNAL
    reason_code: ClassVar[str] = "RECORDING_FAILED"

    def __init__(self, message: str) -> None:
        self.message = message  # first: the root's __init__ may format the error
        super().__init__(self.reason_code, message, public_message=message)

    def __str__(self) -> str:
        return self.message


class ProtocolViolation(RecordingError):
    """The stream is not what its protocol says; recording it stops, with this reason."""

    code = Code.INVALID_ARGUMENT
    reason_code = "STREAM_PROTOCOL_VIOLATION"


class RecordingStoreError(RecordingError):
    """A recording cannot be created here (bad session id, a folder that is a link, ...)."""

    code = Code.FAILED_PRECONDITION
    reason_code = "RECORDING_NOT_CREATED"


class RecordingReadError(RecordingError):
    """A file that is not an asciicast v2 recording."""

    code = Code.DATA_LOSS
    reason_code = "RECORDING_UNREADABLE"


EventT = TypeVar("EventT")


class StreamParser(Generic[EventT]):
    """A parser of one direction of a stream that stays broken: after its first
    ProtocolViolation every `feed` raises it again (what follows a bad frame cannot be framed).
    Subclasses parse in `_feed`."""

    _broken: ProtocolViolation | None = None

    def feed(self, data: bytes) -> list[EventT]:
        if self._broken is not None:
            raise self._broken
        try:
            return self._feed(memoryview(data))
        except ProtocolViolation as violation:
            self._broken = violation
            raise

    def _feed(self, data: memoryview) -> list[EventT]:
        raise NotImplementedError
