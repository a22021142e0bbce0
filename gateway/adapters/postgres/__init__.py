"""The PostgreSQL ledger: the shared stores over psycopg 3, for several instances of one
node (:mod:`.db`), on versioned migrations (:mod:`.schema`)."""
