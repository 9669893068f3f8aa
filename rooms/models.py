# Rooms (multi-user chat with an AI participant) reuse chat.runs; their models land with that feature.
