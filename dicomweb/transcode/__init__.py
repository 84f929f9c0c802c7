"""Transfer-syntax conversion of stored instances and frames (pydicom decoders, imagecodecs encoders)."""

from .codec import NotTranscodable, PixelDescription, decode_frame, encode_frame, transcode_frame
from .instance import transcode_instance
from .syntaxes import FRAME_TARGETS, INSTANCE_TARGETS, frame_media_type, syntax

__all__ = [
    "FRAME_TARGETS",
    "INSTANCE_TARGETS",
    "NotTranscodable",
    "PixelDescription",
    "decode_frame",
    "encode_frame",
    "frame_media_type",
    "syntax",
    "transcode_frame",
    "transcode_instance",
]
