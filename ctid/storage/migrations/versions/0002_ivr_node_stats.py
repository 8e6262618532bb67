"""The IVR's per-node statistics: table ivr_node_stats (ivr.stats.IvrStats.drain rows).

Revision 0002, after 0001. Types spelled out, as in 0001.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ivr_node_stats",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("rid", sa.String(36), nullable=False),
        sa.Column("time", Time, nullable=False),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("exits", Json, nullable=False),
        sa.Column("time_s", sa.Float, nullable=False),
        sa.Column("abandons", sa.Integer, nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ivr_node_stats"),
        sa.UniqueConstraint("rid", name="uq_ivr_node_stats_rid"),
    )
    op.create_index("ix_ivr_node_stats_time", "ivr_node_stats", ["time"])
    op.create_index("ix_ivr_node_stats_flow_node_time", "ivr_node_stats", ["flow", "node", "time"])


def downgrade() -> None:
    op.drop_index("ix_ivr_node_stats_flow_node_time", table_name="ivr_node_stats")
    op.drop_index("ix_ivr_node_stats_time", table_name="ivr_node_stats")
    op.drop_table("ivr_node_stats")
