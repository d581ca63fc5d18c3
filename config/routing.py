"""Websocket routes. The apps add theirs as they land."""
from training.routing import websocket_urlpatterns as training_websockets

websocket_urlpatterns: list = [*training_websockets]
