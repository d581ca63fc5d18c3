from tests.websockets.ws_support import daphne_server  # noqa: F401  (fixture)
