"""Login forms that say when an account is locked out (accounts/lockout.py) instead of "wrong
password"."""
from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm


class _LockoutMessage:
    def get_invalid_login_error(self):
        state = getattr(self.request, "login_locked", None)
        if state is not None:
            return forms.ValidationError(state.message, code="login_locked")
        return super().get_invalid_login_error()


class LoginForm(_LockoutMessage, AuthenticationForm):
    pass


class AdminLoginForm(_LockoutMessage, AdminAuthenticationForm):
    pass
