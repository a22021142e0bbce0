"""Standard formats in and out: CAP 1.2 import/export, EDXL-DE 1.0 export.

XML is parsed here with external entities, DTDs and network access disabled, and
validated against the official OASIS schemas shipped in ``xsd/``.
"""
