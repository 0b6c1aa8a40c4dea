"""Alembic migrations of the run store (applied by ``puraify db upgrade``, and automatically on
first use of the embedded SQLite default)."""
