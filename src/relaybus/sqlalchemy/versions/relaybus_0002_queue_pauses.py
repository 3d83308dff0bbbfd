"""relaybus migration 0002 (queue_pauses): the same SQL as `relaybus migrate`,
recorded in relaybus's migrations table. A database without this migration number applies nothing.

Revision ID: relaybus_0002
"""

from relaybus.sqlalchemy import upgrade as relaybus_upgrade

revision = "relaybus_0002"
down_revision = "relaybus_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    relaybus_upgrade(2)


def downgrade() -> None:
    raise NotImplementedError("relaybus migrations are not reversible")
