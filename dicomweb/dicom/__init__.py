"""DICOM encoding helpers shared by every transport: UIDs, Part 10 parsing, DICOM JSON and XML."""
