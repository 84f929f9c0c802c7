"""Lossless pixel-frame codecs behind one interface, looked up by name.

>>> codec = get_codec("jpegls")
>>> codec.decode(codec.encode(frame), frame.shape, frame.dtype)  # bit-exact

Names: jpegls, j2k, htj2k, jpegxl, ffv1, zstd, gzip, and interslice[:<base>] (predictive, see
:mod:`.interslice`). A codec whose package is missing reports ``available() == False``.
"""

from .base import (
    CodecError,
    CodecUnavailableError,
    CodecUnsupportedError,
    FrameCodec,
    from_unsigned,
    is_supported_frame,
    to_unsigned,
)
from .interslice import DEFAULT_KEYFRAME_INTERVAL, InterSliceCodec
from .registry import available_codecs, codec_names, get_codec, register_codec

__all__ = [
    "DEFAULT_KEYFRAME_INTERVAL",
    "CodecError",
    "CodecUnavailableError",
    "CodecUnsupportedError",
    "FrameCodec",
    "InterSliceCodec",
    "available_codecs",
    "codec_names",
    "from_unsigned",
    "get_codec",
    "is_supported_frame",
    "register_codec",
    "to_unsigned",
]
