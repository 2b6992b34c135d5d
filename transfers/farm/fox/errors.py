"""What a call to the farm's REST API can end in, as types a caller can catch and a retry loop can read.

API errors are looked up in one table by the envelope's code (reference/sdk-spec.md §7.5); a code the
table does not know is a plain FoxApiError. `retryable` says whether trying the same idempotent call
again may help: a network failure, a timeout, a server error, an expired timestamp (a retry signs anew).
A refused signature, a missing login or a bad parameter never gets better by asking again (§8 #20).
"""

from __future__ import annotations

from typing import ClassVar

from transfers.farm.base import FarmError


class FoxError(FarmError):
    """Anything that went wrong talking to the farm. Messages never carry the key or a signature."""


class FoxCredentialsMissing(FoxError):
    """The account has no access id or no access key: nothing could be signed (§8 #30)."""


class FoxUnreachable(FoxError):
    """No answer: the connection failed or timed out."""

    retryable = True


class FoxBadResponse(FoxError):
    """An answer that is not the farm's JSON envelope (a proxy's error page, an HTTP 502, ...)."""

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retryable = http_status >= 500

    @property
    def is_server_error(self) -> bool:
        return self.http_status >= 500


class FoxApiError(FoxError):
    """The farm answered with an envelope whose code is not 200."""

    codes: ClassVar[tuple[int, ...]] = ()
    meaning: ClassVar[str] = "error"

    def __init__(self, code: int, message: str, path: str) -> None:
        super().__init__(f"the farm refused {path}: {self.meaning} (code {code}): {message or 'no message'}")
        self.code = code
        self.message = message
        self.path = path


class SignatureInvalid(FoxApiError):
    codes = (611,)
    meaning = "the signature is invalid (check the access key)"


class SignatureExpired(FoxApiError):
    codes = (610,)
    meaning = "the signature has expired (check this server's clock)"
    retryable = True  # the next attempt carries a fresh timestamp


class NeedLogin(FoxApiError):
    codes = (602,)
    meaning = "the farm asks for a login (check the access id)"


class Forbidden(FoxApiError):
    codes = (403, 605)
    meaning = "not allowed for this account"


class NotFound(FoxApiError):
    codes = (404,)
    meaning = "not found"


class ParameterInvalid(FoxApiError):
    codes = (600, 601)
    meaning = "a parameter is invalid or missing"


class AccountLocked(FoxApiError):
    codes = (804,)
    meaning = "the account is locked"


class IpProhibited(FoxApiError):
    codes = (812,)
    meaning = "this server's IP address is prohibited"


class AreaMismatch(FoxApiError):
    codes = (608,)
    meaning = "the account belongs to the other region (renderbus.com is China, foxrenderfarm.com international)"


class ServerError(FoxApiError):
    codes = (500, 1000)
    meaning = "the farm had an internal error"
    retryable = True


API_ERRORS: dict[int, type[FoxApiError]] = {
    code: kind
    for kind in (
        SignatureInvalid,
        SignatureExpired,
        NeedLogin,
        Forbidden,
        NotFound,
        ParameterInvalid,
        AccountLocked,
        IpProhibited,
        AreaMismatch,
        ServerError,
    )
    for code in kind.codes
}


def api_error(code: int, message: str, path: str) -> FoxApiError:
    """The typed error for an envelope's code (a plain FoxApiError for a code the table lacks)."""
    return API_ERRORS.get(code, FoxApiError)(code, message, path)


def is_retryable(exc: FoxError) -> bool:
    """Whether the same idempotent call may succeed if tried again."""
    return exc.retryable
