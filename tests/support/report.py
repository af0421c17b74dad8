"""Looking at a run report the way a person would: rendered by headless Chromium, as a picture."""

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

GREEN = (0xD7, 0xF0, 0xDD)  # a succeeded step's box in the pipeline graph
RED = (0xFB, 0xDC, 0xDC)  # a failed step's box


def screenshot(report: Path, out: Path) -> Image.Image:
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={out}",
            "--window-size=1400,2400",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return Image.open(out).convert("RGB")


def has_colour(image: Image.Image, rgb: tuple[int, int, int], at_least: int = 500) -> bool:
    return int((np.asarray(image) == rgb).all(axis=-1).sum()) >= at_least
