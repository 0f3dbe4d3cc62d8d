"""One version for every process's chains kept in memory (store/chain_cache.py), moved on by
any change to what a previous_response_id chain reads: a process trusts the chains it keeps
while the version has not moved, by reading one row, whichever process deleted what.

Triggers keep it, so every path that deletes a response or its items (a response deleted, a
cascade) moves it, as would an update of what a chain reads (a response's id, project or
previous response; an item). Responses being stored, run, ended or cancelled move none of
that, so normal turns leave the version alone. Per row on SQLite, per statement on PostgreSQL.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BUMP = "UPDATE chain_version SET version = version + 1 WHERE id = 1;"
POSTGRESQL_BUMP = f"""
CREATE FUNCTION bump_chain_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {BUMP}
    RETURN NULL;
END $$
"""
# Name, event and table of each trigger.
TRIGGERS = [
    ("chain_version_responses_delete", "DELETE", "responses"),
    ("chain_version_responses_update", "UPDATE OF id, project, previous_response_id", "responses"),
    ("chain_version_items_delete", "DELETE", "response_items"),
    ("chain_version_items_update", "UPDATE OF response_id, position, data", "response_items"),
]


def upgrade() -> None:
    chain_version = op.create_table(
        "chain_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(chain_version, [{"id": 1, "version": 0}])
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.execute(POSTGRESQL_BUMP)
    for name, event, table in TRIGGERS:
        if sqlite:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {BUMP} END")
        else:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_chain_version()")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, _, table in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + ("" if sqlite else f" ON {table}"))
    if not sqlite:
        op.execute("DROP FUNCTION bump_chain_version()")
    op.drop_table("chain_version")
