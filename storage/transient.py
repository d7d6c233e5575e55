"""Which failures of a sync with the run's remote may pass if tried again: an object store's
5xx answer (SlowDown, ServiceUnavailable, InternalError), a timeout, a dropped or refused
connection. Anything else (a missing bucket, a denied request, a lost lease, a bug) would fail
again the same way.

Known by shape, not by import, so that storage needs no S3 library: botocore's ClientError
carries `response`, and s3fs re-raises it as an OSError whose cause it is.
"""

from __future__ import annotations

from collections.abc import Iterator

_TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                              "Throttling", "ThrottlingException", "RequestLimitExceeded"})
# botocore / aiohttp connection and timeout errors (not subclasses of the builtin ones).
_TRANSIENT_NAMES = frozenset({"EndpointConnectionError", "ConnectTimeoutError",
                              "ReadTimeoutError", "ConnectionClosedError",
                              "ServerDisconnectedError", "ClientConnectorError",
                              "ClientOSError", "ServerTimeoutError", "ResponseStreamingError"})


class TransientStorageError(OSError):
    """Syncing with the run's remote failed in a way that may pass: safe to retry the task (a
    sync only copies files, and a stage already marked done is not run again)."""


def is_transient(error: BaseException) -> bool:
    for err in _chain(error):
        if isinstance(err, (TimeoutError, ConnectionError)):
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(err).__mro__):
            return True
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code")
            if (isinstance(status, int) and status >= 500) or code in _TRANSIENT_CODES:
                return True
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
