"""Scheduled reducers, in Python: the same tables and reducers as the Rust
`reminders` (guest-modules/test-modules/reminders). One-shot and repeating
reminders each record a row when they run; a gate makes a reminder's
reducer fail while it is closed."""

from interstice import (
    DURATION,
    IDENTITY,
    SCHEDULE_AT,
    STRING,
    TIMESTAMP,
    U32,
    U64,
    Column,
    Module,
    ReducerError,
    Table,
)

# The schedule: each row runs `remind` when it is due.
reminders = Table(
    "reminders",
    [
        Column("scheduled_id", U64),
        Column("scheduled_at", SCHEDULE_AT),
        Column("text", STRING),
    ],
    primary_key="scheduled_id",
    auto_inc="scheduled_id",
    public=True,
    scheduled="remind",
)

# One row per run of a reminder.
fired = Table(
    "fired",
    [
        Column("id", U64),
        Column("reminder", U64),
        Column("text", STRING),
        Column("at", TIMESTAMP),
        Column("sender", IDENTITY),
    ],
    primary_key="id",
    auto_inc="id",
    public=True,
)

# Texts whose reminders fail while they are here.
gates = Table("gates", [Column("text", STRING)], primary_key="text", public=True)

module = Module(tables=[reminders, fired, gates])


@module.reducer
def remind(ctx, row: reminders.row):
    """Runs when a reminder is due; only the scheduler may run it."""
    if ctx.sender != ctx.identity:
        raise ReducerError("reminders run only when they are due")
    if gates.find(row["text"]) is not None:
        raise ReducerError(f"the gate of `{row['text']}` is closed")
    fired.insert(
        {
            "reminder": row["scheduled_id"],
            "text": row["text"],
            "at": ctx.timestamp,
            "sender": ctx.sender,
        }
    )


@module.reducer
def remind_at(ctx, text: STRING, at: TIMESTAMP):
    """A reminder that runs once, at `at` (µs since the Unix epoch)."""
    reminders.insert({"scheduled_at": {"Time": at}, "text": text})


@module.reducer
def remind_every(ctx, text: STRING, every: DURATION):
    """A reminder that runs every `every`, first one interval from now."""
    reminders.insert({"scheduled_at": {"Interval": every}, "text": text})


@module.reducer
def remind_many(ctx, text: STRING, count: U32, after: DURATION, spread: DURATION):
    """`count` one-shot reminders, due `after` from now, `spread` apart."""
    for i in range(count):
        at = ctx.timestamp + after + spread * i
        reminders.insert({"scheduled_at": {"Time": at}, "text": f"{text} {i}"})


@module.reducer
def cancel(ctx, id: U64):
    if not reminders.delete(id):
        raise ReducerError(f"no reminder {id}")


@module.reducer
def close_gate(ctx, text: STRING):
    gates.insert({"text": text})


@module.reducer
def open_gate(ctx, text: STRING):
    gates.delete(text)


WitWorld = module.world()
