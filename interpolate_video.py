#!/usr/bin/env python3
"""Smooth jump cuts: the 15-s splice (5 s before Frame A, a generated bridge, 5 s from Frame B), or a
whole edit with every junction smoothed. See README.md, or `--help`.

    python3 interpolate_video.py --input IN.mp4 --output OUT.mp4

The same as the installed `interpolate-video` command (splice.cli).
"""
import sys

from splice.cli import main

if __name__ == "__main__":
    sys.exit(main())
