"""The run pipeline shared by chat (and later rooms): store, queue, execute, publish, replay, stop.

Every state change that emits a frame lives here; consumers and Celery tasks call it and never
`group_send` on their own.
"""
