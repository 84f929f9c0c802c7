"""HTTP plumbing shared by the DICOMweb resources: media types, multipart, problem details."""
