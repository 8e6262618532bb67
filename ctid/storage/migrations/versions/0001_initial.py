"""Initial schema: calls with their legs, the CTI audit log, the ACD queue log.

Tables cdr and cdr_leg (one row per call, one per leg), audit (CTI security), queue_log
(the ACD's transitions).

Revision 0001, the first. Types are spelled out here rather than imported from the models,
so this revision keeps creating the same tables whatever the models become.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cdr",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("rid", sa.String(36), nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("started", Time, nullable=False),
        sa.Column("ended", Time, nullable=True),
        sa.Column("calling", sa.Text, nullable=False),
        sa.Column("called", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("transfers", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cdr"),
        sa.UniqueConstraint("rid", name="uq_cdr_rid"),
    )
    op.create_index("ix_cdr_call_id", "cdr", ["call_id"])
    op.create_index("ix_cdr_started", "cdr", ["started"])

    op.create_table(
        "cdr_leg",
        sa.Column("cdr_rid", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("started", Time, nullable=False),
        sa.Column("answered", Time, nullable=True),
        sa.Column("ended", Time, nullable=True),
        sa.Column("cause", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("cdr_rid", "seq", name="pk_cdr_leg"),
        sa.ForeignKeyConstraint(["cdr_rid"], ["cdr.rid"], name="fk_cdr_leg_cdr_rid_cdr",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_cdr_leg_call_id", "cdr_leg", ["call_id"])
    op.create_index("ix_cdr_leg_device_started", "cdr_leg", ["device", "started"])

    op.create_table(
        "audit",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("rid", sa.String(36), nullable=False),
        sa.Column("time", Time, nullable=False),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        sa.UniqueConstraint("rid", name="uq_audit_rid"),
    )
    op.create_index("ix_audit_time", "audit", ["time"])

    op.create_table(
        "queue_log",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("rid", sa.String(36), nullable=False),
        sa.Column("time", Time, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("call", sa.Text, nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_log"),
        sa.UniqueConstraint("rid", name="uq_queue_log_rid"),
    )
    op.create_index("ix_queue_log_time", "queue_log", ["time"])
    op.create_index("ix_queue_log_queue_time", "queue_log", ["queue", "time"])


def downgrade() -> None:
    op.drop_table("queue_log")
    op.drop_table("audit")
    op.drop_table("cdr_leg")
    op.drop_table("cdr")
