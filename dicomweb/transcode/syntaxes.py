"""Transfer syntaxes the archive gives out: their frame media types (PS3.18 Table 8.7.3-5) and what can encode them.

Decoding goes through pydicom's pixel backends (every syntax in the test data decodes); encoding is limited to
the syntaxes below whose codec is installed: pydicom's own RLE and JPEG 2000 encoders and imagecodecs'
libjpeg-turbo (baseline and lossless JPEG), CharLS (JPEG-LS) and OpenJPH (HTJ2K).
"""

from __future__ import annotations

from dataclasses import dataclass

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
J2K_PART2_LOSSLESS = "1.2.840.10008.1.2.4.92"
J2K_PART2 = "1.2.840.10008.1.2.4.93"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE = "1.2.840.10008.1.2.5"

OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Syntax:
    uid: str
    media_type: str  # of one frame or of pixel data bulk data in this syntax
    encapsulated: bool
    lossless: bool
    encodable: bool  # the archive can produce it from decoded pixels


_TABLE = [
    Syntax(IMPLICIT_LE, OCTET_STREAM, False, True, True),
    Syntax(EXPLICIT_LE, OCTET_STREAM, False, True, True),
    Syntax(DEFLATED_LE, OCTET_STREAM, False, True, False),
    Syntax(EXPLICIT_BE, OCTET_STREAM, False, True, False),
    Syntax(JPEG_BASELINE, "image/jpeg", True, False, True),
    Syntax(JPEG_EXTENDED, "image/jpeg", True, False, False),
    Syntax(JPEG_LOSSLESS, "image/jpeg", True, True, False),
    Syntax(JPEG_LOSSLESS_SV1, "image/jpeg", True, True, True),
    Syntax(JPEG_LS_LOSSLESS, "image/jls", True, True, True),
    Syntax(JPEG_LS_NEAR, "image/jls", True, False, False),
    Syntax(J2K_LOSSLESS, "image/jp2", True, True, True),
    Syntax(J2K, "image/jp2", True, False, True),
    Syntax(J2K_PART2_LOSSLESS, "image/jpx", True, True, False),
    Syntax(J2K_PART2, "image/jpx", True, False, False),
    Syntax(HTJ2K_LOSSLESS, "image/jphc", True, True, True),
    Syntax(HTJ2K_RPCL, "image/jphc", True, True, False),
    Syntax(HTJ2K, "image/jphc", True, False, False),
    Syntax(RLE, "image/dicom-rle", True, True, True),
]
SYNTAXES: dict[str, Syntax] = {s.uid: s for s in _TABLE}

# The transfer syntax a frame media type means when the Accept header names none (PS3.18 Table 8.7.3-5).
DEFAULT_FOR_MEDIA = {
    OCTET_STREAM: EXPLICIT_LE,
    "image/jpeg": JPEG_BASELINE,
    "image/jls": JPEG_LS_LOSSLESS,
    "image/jp2": J2K_LOSSLESS,
    "image/jpx": J2K_PART2_LOSSLESS,
    "image/jphc": HTJ2K_LOSSLESS,
    "image/dicom-rle": RLE,
}
# Instances can be written in these (the native ones plus every encodable compressed syntax).
INSTANCE_TARGETS = tuple(s.uid for s in _TABLE if s.encodable)
# Frames are given uncompressed as Explicit VR Little Endian, never as implicit or big endian.
FRAME_TARGETS = tuple(uid for uid in INSTANCE_TARGETS if uid != IMPLICIT_LE)


def syntax(uid: str) -> Syntax:
    """The table entry; an unknown (private) syntax is taken as encapsulated and not encodable."""
    return SYNTAXES.get(uid) or Syntax(uid, OCTET_STREAM, True, False, False)


def frame_media_type(uid: str) -> str:
    return syntax(uid).media_type


def is_native(uid: str) -> bool:
    return uid in (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_LE)
