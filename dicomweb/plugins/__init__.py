"""Optional parts with their own dependencies: codecs, dimse, federation, wsi."""
