"""The Alembic environment of the state database; the revisions live with each component."""
