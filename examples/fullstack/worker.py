"""The worker: a tick a second, counted in Redis (the web page shows the count)."""

import os
import time
from urllib.parse import urlsplit

import redis

cache = redis.Redis(host="127.0.0.1", port=urlsplit(os.environ["A3S_REDIS_URL"]).port)
print("worker ticking", flush=True)
while True:
    ticks = cache.incr("worker:ticks")
    if ticks % 30 == 1:
        print(f"worker tick {ticks}", flush=True)
    time.sleep(1)
