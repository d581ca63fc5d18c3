"""Websocket routes. The apps add theirs as they land."""
from django.urls import re_path

from config.ws_guard import NotFound
from training.routing import websocket_urlpatterns as training_websockets

# Any other path: refused with 4404 (not a 500 from the router).
websocket_urlpatterns: list = [*training_websockets, re_path(r"", NotFound())]
