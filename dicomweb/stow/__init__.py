"""STOW-RS (PS3.18 10.5): streaming multipart reader, instance store, response dataset."""
