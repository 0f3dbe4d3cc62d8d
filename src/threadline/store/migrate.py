"""Apply Alembic migrations; safe when several processes start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from threadline.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every Threadline process.
MIGRATION_LOCK_KEY = 7_148_526_302


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def migrate(database: Database) -> None:
    """Bring the schema to the newest revision."""
    config = _alembic_config()

    def upgrade(connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with database.write() as connection:
        if not database.is_sqlite:
            # PostgreSQL runs the DDL in this transaction; the lock makes concurrent starts wait.
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
        await connection.run_sync(upgrade)
