"""The channel layer: how live updates reach the websocket consumers in every web process.

Redis pub/sub (`channels_redis.pubsub.RedisPubSubChannelLayer`, the default): a group send is
one PUBLISH, and each web process receives its groups' messages pushed on one connection. The
list-based layer (`CHANNEL_LAYER_KIND=lists`, `channels_redis.core.RedisChannelLayer`) stores
each message in a Redis sorted set per process and pops them one round trip at a time: under
1,000 pod events/s its receivers fell 10-17 s behind and dropped thousands of messages past
their capacity (docs/performance.md). Both deliver at most once; a client that missed updates
re-syncs from the snapshot it gets when it reconnects.
"""
from .env import env_str
from .redis import REDIS_URL

CHANNEL_LAYER_URL = env_str("CHANNEL_LAYER_URL", REDIS_URL)
CHANNEL_LAYER_KIND = env_str("CHANNEL_LAYER_KIND", "pubsub")
_LAYERS = {
    "pubsub": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
               "CONFIG": {"hosts": [CHANNEL_LAYER_URL]}},
    "lists": {"BACKEND": "channels_redis.core.RedisChannelLayer",
              "CONFIG": {"hosts": [CHANNEL_LAYER_URL], "capacity": 1500, "expiry": 30}},
}
if CHANNEL_LAYER_KIND not in _LAYERS:
    raise ValueError(f"CHANNEL_LAYER_KIND must be one of {', '.join(_LAYERS)}, not {CHANNEL_LAYER_KIND!r}")
CHANNEL_LAYERS = {"default": _LAYERS[CHANNEL_LAYER_KIND]}
