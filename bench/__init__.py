"""`make bench`: the real stack under load from real websocket clients; see bench/__main__.py."""
