"""The SQLite ledger: one file, one writer thread with group commit, one store module
per concern, and a versioned schema (:mod:`.schema`)."""
