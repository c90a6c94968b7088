"""The store's Alembic migrations (env.py, versions/): applied by shared.schema, never by hand-run DDL.

HEAD names the newest revision so that a process can tell a current database with one query,
without loading Alembic (a tenth of a second on every command); tests/test_migrations.py checks it
against the scripts.
"""

HEAD = "0004"
