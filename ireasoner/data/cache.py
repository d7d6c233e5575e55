"""Decoded images on demand: a least-recently-used cache bounded in bytes.

A source lists its inputs without decoding them (`ireasoner.data.sources`); a stage asks for an
image when it needs its pixels. Holding every decoded image would cost about 3 MB each at the
default pixel budget (300 GB for 100,000 images); the cache keeps the most recently used ones
within `data.image_cache_mb`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image


def image_bytes(image: Image.Image) -> int:
    """What a decoded image holds in memory (its pixel buffer)."""
    return image.width * image.height * len(image.getbands())


class ImageCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()  # stages may decode from worker threads

    def get(self, key: str, decode: Callable[[], Image.Image]) -> Image.Image:
        with self._lock:
            if key in self._images:
                self.hits += 1
                self._images.move_to_end(key)
                return self._images[key]
            self.misses += 1
        image = decode()  # outside the lock: decoding is the slow part
        self._put(key, image)
        return image

    def __len__(self) -> int:
        return len(self._images)

    def _put(self, key: str, image: Image.Image) -> None:
        size = image_bytes(image)
        if size > self.max_bytes:
            return  # larger than the whole cache: used once, never held
        with self._lock:
            if key in self._images:
                return
            self._images[key] = image
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._images.popitem(last=False)
                self.bytes -= image_bytes(evicted)
                self.evictions += 1
