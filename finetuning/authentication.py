"""`Authorization: Bearer <key>` for the /v1/ API (the `openai` client sends its api_key so)."""
from __future__ import annotations

from rest_framework import authentication, exceptions

from finetuning import services


class InvalidApiKey(exceptions.AuthenticationFailed):
    openai_code = "invalid_api_key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != self.keyword.lower() or not raw or " " in raw:
            raise InvalidApiKey("Malformed Authorization header: send 'Authorization: Bearer YOUR_KEY'.")
        api_key = services.api_key_authenticate(raw_key=raw)
        if api_key is None:
            shown = raw[:8] + "…" if len(raw) > 8 else "…"
            raise InvalidApiKey(f"Incorrect API key provided: {shown}. Keys are issued in the admin or on the "
                                "dashboard; a revoked key stops working at once.")
        if not api_key.user.is_active:
            raise InvalidApiKey("The user of this API key is deactivated.")
        return api_key.user, api_key

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) when no key is sent.
        return 'Bearer realm="api"'
