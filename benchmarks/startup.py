"""Start-up on a large image directory (not a test: prints figures).

Builds a directory of N small PNGs (default 100,000; 100 per sub-folder; hard links of 64 drawn
images, so the set costs a few MB of disk) in a temporary directory, then times what a training
process does before its first rollout can be sampled: list the source (`load_images`, which
decodes the first image only), pick iteration 1's images and decode them. Also reports the
peak RSS, and what decoding all N up front would have held (the behaviour before lazy images).

    .venv/bin/python benchmarks/startup.py [--images 100000] [--per-iteration 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from PIL import Image

from ireasoner.config import DataConfig
from ireasoner.data.cache import image_bytes
from ireasoner.data.sources import decode_or_skip, images_for_iteration, load_images


def build_directory(root: Path, count: int, size: tuple[int, int]) -> None:
    originals = []
    for k in range(64):
        path = root / f"original-{k:02d}.png"
        Image.new("RGB", size, (k * 4, 255 - k * 4, (k * 37) % 256)).save(path)
        originals.append(path)
    for i in range(count):
        folder = root / "images" / f"{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        os.link(originals[i % 64], folder / f"{i:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-iteration", type=int, default=1)
    parser.add_argument("--size", type=int, default=640, help="side of the square images")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build_directory(root, args.images, (args.size, args.size))
        print(f"built {args.images} PNGs ({args.size}x{args.size}) in "
              f"{time.perf_counter() - start:.1f} s")
        cfg = DataConfig(source="directory", path=str(root / "images"), seed=0)

        start = time.perf_counter()
        image_set = load_images(cfg)
        listed = time.perf_counter() - start
        records = images_for_iteration(image_set, 1, args.per_iteration, seed=0)
        usable, skipped = decode_or_skip(records)
        ready = time.perf_counter() - start
        assert len(image_set.records) == args.images and usable and not skipped

        one = image_bytes(usable[0][1].image)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"load_images (list {args.images}, decode the first): {listed:.2f} s")
        print(f"first iteration's {args.per_iteration} image(s) ready: {ready:.2f} s after load "
              "began")
        print(f"decoded images held: {len(image_set.cache)} ({image_set.cache.bytes / 2**20:.1f} "
              f"MB); peak RSS of this process {peak_mb:.0f} MB")
        print(f"decoding all up front would hold {args.images * one / 2**30:.1f} GB "
              f"({one / 2**20:.2f} MB per image)")


if __name__ == "__main__":
    main()
