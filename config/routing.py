"""Websocket routes. The apps add theirs as they land (jobs: /ws/jobs/...)."""
websocket_urlpatterns: list = []
