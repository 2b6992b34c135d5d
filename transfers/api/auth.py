"""Token authentication for scripts: `Authorization: Token <key>` (or `Bearer <key>`), keys made on /tokens/
or by `manage.py api_token` (transfers.api_tokens). A request without that header is left to the other
authentication classes; one with a bad, revoked or inactive user's key is refused with 401."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from transfers.api_tokens import KEY_PREFIX, api_token_user

SCHEMES = (b"token", b"bearer")


class ApiTokenAuthentication(BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in SCHEMES:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("send one key: 'Authorization: Token <key>'")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("this API token is not valid (wrong, revoked, or its user is inactive)") from None
        if parts[0].lower() == b"bearer" and not key.startswith(KEY_PREFIX):
            return None  # another kind of bearer token (a farm events token): not ours to judge
        found = api_token_user(key)
        if found is None:
            raise AuthenticationFailed("this API token is not valid (wrong, revoked, or its user is inactive)")
        return found

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="rvweb api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the schema names the token: an apiKey in the Authorization header ("Token <key>")."""

    target_class = "transfers.api.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Token <key> (made on /tokens/)"}
