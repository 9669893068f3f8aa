"""The production settings with the core channel layer (RedisChannelLayer) instead of pub/sub,
for the layer comparison only: `DJANGO_SETTINGS_MODULE=bench.settings_core`."""

from nous_site.settings import *  # noqa: F403
from nous_site.settings import REDIS_URL

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # The same redis-py 8 workarounds as the pub/sub layer in nous_site/settings.py.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 10000}]},
    }
}
