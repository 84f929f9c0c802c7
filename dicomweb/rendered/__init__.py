"""Rendered images and thumbnails (PS3.18 8.3.5, 10.4.1.1.3): decode, VOI, viewport, encode, cache."""
