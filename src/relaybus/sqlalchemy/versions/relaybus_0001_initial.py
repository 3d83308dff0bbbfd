"""relaybus migration 0001 (initial): the same SQL as `relaybus migrate`,
recorded in relaybus's migrations table. A database without this migration number applies nothing.

Revision ID: relaybus_0001
"""

from relaybus.sqlalchemy import upgrade as relaybus_upgrade

revision = "relaybus_0001"
down_revision = None
branch_labels = ("relaybus",)
depends_on = None


def upgrade() -> None:
    relaybus_upgrade(1)


def downgrade() -> None:
    raise NotImplementedError("relaybus migrations are not reversible")
