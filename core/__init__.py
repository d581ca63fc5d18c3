"""Plumbing every app shares, owned by none: domain errors (`errors`), who the caller is and what
their role allows (`permissions`), organization-scoped API views and pagination (`apis`), and
live-update routing to websocket clients (`broadcast`).

core imports no app but `accounts` (memberships and roles); every app may import core. Not a
Django app: it has no models.
"""
