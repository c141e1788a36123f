"""`CredentialKeeper`: keeps a valid credential in memory, refreshing it in the background.

Rules of this module:
- callers read the cache (`current()`), never the network: a slow or absent exchanger never
  holds up a caller;
- the first exchange happens at start; later ones at the refresh point of `sidecar.refresh`;
- a transient failure (`ExchangeError.transient`, an unreadable subject token, anything
  unexpected) is retried on the backoff schedule, while the cached credential is served until
  `min_remaining` before it expires;
- a denial is never retried in a loop: it is logged once, and tried again only after
  `denial_backoff`, or sooner when the subject token is replaced; so is any other answer
  that is not transient (INTERNAL, ...): the same token would get it again;
- each exchange has a short timeout while a credential is cached (`exchange_timeout`), a
  longer one when nothing is (`initial_timeout`): nobody is waiting on it then;
- a credential the API server refused (`refused_by_apiserver(session_id)`, from the proxy on
  a 401) is no longer served (not ready) and a new one is asked for at once; bounded: once per
  credential, and no sooner than `FORCED_REFRESH_INTERVAL` after the previous forced one, so
  an exchanger issuing credentials the API server refuses is not called in a loop; a refusal
  of an older credential than the cached one is ignored;
- one log line per change of condition, not per retry; one per successful refresh. No token,
  and no traceback, in any of them. Lines written during an attempt are in its request scope
  (`kubegate.logformat`): a JSON line carries the new credential's session id.
"""

from __future__ import annotations

import logging
import random as random_module
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kubegate.client.sources import SubjectTokenError, SubjectTokenSource
from kubegate.credential import Credential
from kubegate.errors import ExchangeError
from kubegate.logformat import request_scope, set_session_id
from kubegate.workers import BackgroundWorker
from sidecar.refresh import RefreshPolicy, backoff_delay, may_serve, refresh_at, serve_until

log = logging.getLogger("kubegate.sidecar")

# answers that mean "this token may not": reported as a denial
DENIAL_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT",
                          "FAILED_PRECONDITION"})
# conditions a new subject token can end: the token is polled for a change
_WATCH_TOKEN = frozenset({"denied", "failed", "no-subject-token"})
DEFAULT_INITIAL_TIMEOUT = 10.0
DEFAULT_TOKEN_POLL = 10.0
FORCED_REFRESH_INTERVAL = 30.0  # seconds between two refreshes forced by an API server refusal


class ExchangePort(Protocol):
    def exchange(self, subject_token: str, *, timeout: float) -> Credential:
        """One exchange attempt; raises ExchangeError."""
        ...


@dataclass(frozen=True, kw_only=True)
class KeeperState:
    ready: bool  # holds a credential that may be served
    # starting | ready | refresh-failing | unavailable | denied | failed | no-subject-token |
    # revoked (the API server refused the cached credential; a new one is on its way)
    status: str
    last_error: str | None
    expires_in: float | None  # seconds until the cached credential expires
    session_id: str | None
    refreshed_at: float | None  # when the cached credential was received


@dataclass(frozen=True, kw_only=True)
class _Failure:
    status: str
    key: str  # what makes two failures "the same condition" (not the message text)
    message: str
    result: str  # metric label


class CredentialKeeper:
    def __init__(self, source: SubjectTokenSource, port: ExchangePort, *,
                 policy: RefreshPolicy, clock: Callable[[], float] = time.time,
                 random: Callable[[], float] = random_module.random,
                 wait: Callable[[float], bool] | None = None,
                 on_result: Callable[[str], None] | None = None,
                 exchange_timeout: float = 3.0,
                 initial_timeout: float = DEFAULT_INITIAL_TIMEOUT,
                 token_poll: float = DEFAULT_TOKEN_POLL) -> None:
        self._source, self._port, self._policy = source, port, policy
        self._clock, self._random = clock, random
        self._wake = threading.Event()  # set to refresh before the planned time
        self._worker = BackgroundWorker("kubegate-keeper", lambda stopping: self.run(),
                                        on_stop=self._wake.set)
        self._wait = wait or self._sleep
        self._on_result = on_result or (lambda result: None)
        self._timeouts = (exchange_timeout, max(initial_timeout, exchange_timeout))
        self._token_poll = token_poll
        self._lock = threading.Lock()
        self._credential: Credential | None = None
        self._refreshed_at: float | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self._failure: _Failure | None = None
        self._blocked_token: str | None = None  # fingerprint of a denied subject token
        self._was_servable = False
        self._refused_session: str | None = None  # the API server refused this credential
        self._last_forced: float | None = None  # when a refusal last forced a refresh

    # -- what callers read --------------------------------------------------------------

    def current(self) -> Credential | None:
        """The cached credential while it may be served, else None. Never blocks on I/O."""
        credential = self._credential
        if credential is None or credential.session_id == self._refused_session:
            return None
        if not may_serve(expires_at=credential.expires_at, now=self._clock(),
                         policy=self._policy):
            return None
        return credential

    def state(self) -> KeeperState:
        with self._lock:
            credential, failure = self._credential, self._failure
            refreshed_at = self._refreshed_at
        servable = self.current() is not None
        refused = self._is_refused(credential)
        if refused and (failure is None or failure.status == "refresh-failing"):
            status = "revoked"
        elif failure is not None:
            status = failure.status
            if status == "refresh-failing" and not servable:
                status = "unavailable"
        else:
            status = "ready" if servable else "starting" if credential is None else "unavailable"
        last_error = failure.message if failure else None
        if refused:
            last_error = (f"the API server refused the credential of session "
                          f"{self._refused_session}" + (f"; then {last_error}" if last_error
                                                        else "; getting a new one"))
        if not servable and credential is not None and last_error is None:
            last_error = "the cached credential is about to expire and was not refreshed"
        return KeeperState(
            ready=servable, status=status, last_error=last_error,
            expires_in=credential.expires_at - self._clock() if credential else None,
            session_id=credential.session_id if credential else None,
            refreshed_at=refreshed_at)

    # -- the background thread ----------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._worker.stop(timeout)

    def refused_by_apiserver(self, session_id: str) -> None:
        """The API server answered 401 to the credential of session_id: stop serving it and
        refresh now (bounded). Thread-safe; called from the proxy's connection threads."""
        now = self._clock()
        with self._lock:
            credential = self._credential
            if credential is None or credential.session_id != session_id or \
                    self._refused_session == session_id:
                return  # an older credential, or already known
            self._refused_session = session_id
            earliest = now if self._last_forced is None else \
                self._last_forced + FORCED_REFRESH_INTERVAL
            self._next_attempt = min(self._next_attempt, max(now, earliest))
            self._last_forced = max(now, earliest)
        log.warning("the API server refused the credential of session %s (HTTP 401): not "
                    "ready; getting a new one %s", session_id,
                    "now" if earliest <= now else f"in {earliest - now:.0f}s")
        self._wake.set()

    def _sleep(self, delay: float) -> bool:
        self._wake.wait(delay)
        self._wake.clear()
        return self._worker.stopping.is_set()

    def run(self) -> None:
        """Refresh until stop() (or until the injected wait says to stop)."""
        while not self._worker.stopping.is_set():
            if self._wait(self.step()):
                return

    def step(self) -> float:
        """Exchange if it is time (or the denied token was replaced); return seconds to wait."""
        now = self._clock()
        if now >= self._next_attempt or self._token_replaced():
            self._attempt(now)
        now = self._clock()
        self._note_serve_window(now)
        return self._delay(now)

    # -- one attempt --------------------------------------------------------------------

    def _attempt(self, now: float) -> None:
        with request_scope():
            self._attempt_in_scope(now)

    def _attempt_in_scope(self, now: float) -> None:
        # taken before reading: if the token rotates in between, the next poll sees a change
        fingerprint = self._source.fingerprint()
        try:
            token = self._source.read()
            credential = self._port.exchange(token, timeout=self._timeout())
        except SubjectTokenError as error:
            self._failed(now, _Failure(status="no-subject-token", key="source",
                                       message=str(error), result="no_subject_token"))
        except ExchangeError as error:
            if error.transient:
                self._failed(now, self._transient(f"exchange failed: {_describe(error)}",
                                                  error.code.name))
            else:
                self._refused(now, error, fingerprint)
        except Exception as error:  # an adapter bug or a vanished CA file: retry, no traceback
            self._failed(now, self._transient(
                f"exchange failed unexpectedly: {type(error).__name__}: {error}", "error",
                result="error"))
        else:
            self._succeeded(now, credential)

    def _timeout(self) -> float:
        return self._timeouts[0] if self.current() is not None else self._timeouts[1]

    def _transient(self, message: str, key: str, result: str = "transient") -> _Failure:
        status = "refresh-failing" if self.current() is not None else "unavailable"
        return _Failure(status=status, key=f"transient:{key}", message=message, result=result)

    def _succeeded(self, now: float, credential: Credential) -> None:
        set_session_id(credential.session_id)
        if credential.expires_at - now <= self._policy.min_remaining:
            self._failed(now, self._transient(
                f"the exchanger issued a credential that expires in "
                f"{credential.expires_at - now:.0f}s, within min_remaining "
                f"({self._policy.min_remaining:g}s)", "short-lifetime"))
            return
        planned = refresh_at(issued_at=now, expires_at=credential.expires_at,
                             policy=self._policy, random=self._random())
        with self._lock:
            recovered = self._failure is not None or self._is_refused(self._credential)
            self._credential, self._refreshed_at = credential, now
            self._failure, self._failures, self._blocked_token = None, 0, None
            self._next_attempt = max(planned, now + self._policy.backoff_initial)
        self._was_servable = True
        self._on_result("ok")
        log.info("%s: session %s (mapping %s) expires in %ds; next refresh in %ds",
                 "recovered, got a credential" if recovered else "got a credential",
                 credential.session_id, credential.mapping, credential.expires_at - now,
                 self._next_attempt - now)

    def _failed(self, now: float, failure: _Failure) -> None:
        with self._lock:
            self._failures += 1
            delay = backoff_delay(self._failures, policy=self._policy, random=self._random())
            self._next_attempt = now + delay
            previous, self._failure = self._failure, failure
        self._on_result(failure.result)
        if previous is None or previous.key != failure.key:
            serving = self.current()
            then = (f"serving the cached credential (expires in "
                    f"{serving.expires_at - now:.0f}s) and retrying with backoff"
                    if serving else "not ready; retrying with backoff")
            log.warning("%s; %s", failure.message, then)

    def _refused(self, now: float, error: ExchangeError, fingerprint: str | None) -> None:
        """A denial, or another answer the same token would get again (INTERNAL, ...)."""
        denied = error.code.name in DENIAL_CODES
        failure = _Failure(status="denied" if denied else "failed",
                           key=f"refused:{error.code.name}:{error.reason}",
                           message=f"exchange {'denied' if denied else 'failed'}: "
                           f"{_describe(error)}", result="denied" if denied else "error")
        with self._lock:
            self._next_attempt = now + self._policy.denial_backoff
            self._failures, self._blocked_token = 0, fingerprint
            self._failure = failure
        self._on_result(failure.result)
        log.error("%s; not retrying for %ds or until the subject token changes%s",
                  failure.message, self._policy.denial_backoff,
                  "" if self.current() is None else " (the cached credential is still served)")

    # -- between attempts ---------------------------------------------------------------

    def _token_replaced(self) -> bool:
        """A refused token, or a missing one, was replaced: worth trying now."""
        failure = self._failure
        if failure is None or failure.status not in _WATCH_TOKEN:
            return False
        current = self._source.fingerprint()
        if failure.status == "no-subject-token":
            return current is not None
        return current is not None and current != self._blocked_token

    def _is_refused(self, credential: Credential | None) -> bool:
        return credential is not None and credential.session_id == self._refused_session

    def _note_serve_window(self, now: float) -> None:
        servable = self.current() is not None
        if self._was_servable and not servable and not self._is_refused(self._credential):
            failure = self._failure
            log.error("the cached credential expires in %ds and is no longer served: not ready"
                      "%s", (self._credential.expires_at - now) if self._credential else 0,
                      f" (last error: {failure.message})" if failure else "")
        self._was_servable = servable

    def _delay(self, now: float) -> float:
        delay = self._next_attempt - now
        failure = self._failure
        if failure is not None and failure.status in _WATCH_TOKEN:
            delay = min(delay, self._token_poll)
        credential = self.current()
        if credential is not None:  # wake at the end of the serve window, to report it
            delay = min(delay, serve_until(credential.expires_at, self._policy) - now)
        return max(delay, 0.0)


def _describe(error: ExchangeError) -> str:
    status = f"{error.code.name} {error.reason}" if error.reason else error.code.name
    return f"{status}: {' '.join((error.message or 'no message').split())}"
