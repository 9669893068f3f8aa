"""Interpreter tuning for the long-running server processes: ASGI servers and Celery workers.

Measured with `make bench` (bench/README.md), 2 cores, 300-500 streaming chats:
- The event loop thread shares the GIL with the database threads. At the default 5 ms switch
  interval every socket write made while a database thread runs ORM code waits up to 5 ms for the
  GIL; at 100 streams added latency p99 fell from 122 to 37 ms with 0.5 ms.
- The cyclic garbage collector ran about 70 times a second in a worker, and its full collections
  over the imported code's objects stopped the event loop for 110-150 ms. The objects that exist
  once the app is loaded are frozen out of collection, and young collections are rarer.
"""

import gc
import sys

from django.conf import settings


def tune_interpreter() -> None:
    """Call once the app is loaded, before serving."""
    sys.setswitchinterval(settings.NOUS_GIL_SWITCH_SECS)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.NOUS_GC_THRESHOLDS)
