"""Who is calling (401) and whether they may call this (403). Messages never echo key material."""

from __future__ import annotations

from inferd.errors import PermissionDenied, Unauthenticated
from inferd.names import model_name
from inferd.security.apis import Api
from inferd.security.keys import KeyStore, Principal


def bearer_or_api_key(authorization: str | None, api_key: str | None) -> str | None:
    """The presented key: ``Authorization: Bearer <key>`` wins over ``X-API-Key: <key>``."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return api_key.strip() if api_key else None


class Authenticator:
    def __init__(self, keys: KeyStore, open_health: bool) -> None:
        self.keys = keys
        self._open_health = open_health

    def check(self, credential: str | None, api: Api | None, model: str | None) -> Principal | None:
        """The caller's principal; None for an open health call. Raises Unauthenticated/PermissionDenied,
        or InvalidName (400) for a model name that is not one (checked before the key's scope).

        ``api`` None (a route that does not exist) only authenticates: the front-end then answers 404.
        """
        if api is Api.HEALTH and self._open_health:
            return None
        if not credential:
            raise Unauthenticated("an API key is required (Authorization: Bearer <key> or X-API-Key)")
        principal = self.keys.lookup(credential)
        if principal is None:
            raise Unauthenticated("the API key is not valid")
        if api is not None and api not in principal.apis:
            raise PermissionDenied(f"key '{principal.id}' may not use the {api.value} API", principal.id)
        if model is not None and not principal.may_use_model(model_name(model)):
            raise PermissionDenied(f"key '{principal.id}' may not use model '{model}'", principal.id)
        return principal
