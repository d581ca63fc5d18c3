"""Django's username/password backend behind the login lockout (accounts/lockout.py)."""
from __future__ import annotations

import logging

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import lockout

logger = logging.getLogger(__name__)


class LockoutModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            from django.contrib.auth import get_user_model

            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        ip = lockout.client_ip(request)
        state = lockout.locked(username, ip)
        if state is not None:
            logger.warning("sign-in refused for %r from %s: %s", username[:100], ip, state.why)
            if request is not None:
                request.login_locked = state  # the views say why (429 on the API)
            raise PermissionDenied(state.message)  # stops authenticate(): no other backend is tried
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            lockout.record_failure(username, ip)
        else:
            lockout.reset(username)
        return user
