from .env import env_str
from .redis import REDIS_URL

CHANNEL_LAYER_URL = env_str("CHANNEL_LAYER_URL", REDIS_URL)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [CHANNEL_LAYER_URL], "capacity": 1500, "expiry": 30},
    }
}
