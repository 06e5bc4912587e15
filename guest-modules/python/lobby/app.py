"""Identities and sessions, in Python: the same tables and reducers as the
Rust `lobby` (guest-modules/test-modules/lobby). It records who called, who
connected and disconnected, keeps a private and a public table, and can be
told to refuse the next sessions."""

from interstice import (
    BOOL,
    IDENTITY,
    STRING,
    U32,
    U64,
    Column,
    Module,
    ReducerError,
    Table,
    optional,
)

# Who made each call, and with which token claims.
calls = Table(
    "calls",
    [
        Column("id", U64),
        Column("sender", IDENTITY),
        Column("issuer", optional(STRING)),
        Column("subject", optional(STRING)),
        Column("owner", IDENTITY),
    ],
    primary_key="id",
    auto_inc="id",
    public=True,
)

# Every lifecycle event, in order.
events = Table(
    "events",
    [
        Column("id", U64),
        Column("connected", BOOL),
        Column("sender", IDENTITY),
        Column("connection_id", U64),
    ],
    primary_key="id",
    auto_inc="id",
    public=True,
)

# Private: clients may not read it.
secrets = Table(
    "secrets",
    [Column("id", U64), Column("text", STRING)],
    primary_key="id",
)

# Whether `client_connected` refuses (row 0 present: yes).
gate = Table(
    "gate",
    [Column("id", U32), Column("reason", STRING)],
    primary_key="id",
)

module = Module(tables=[calls, events, secrets, gate])


@module.reducer
def whoami(ctx):
    calls.insert(
        {
            "sender": ctx.sender,
            "issuer": None if ctx.token is None else ctx.token.issuer,
            "subject": None if ctx.token is None else ctx.token.subject,
            "owner": ctx.owner,
        }
    )


@module.reducer
def keep_secret(ctx, id: U64, text: STRING):
    secrets.insert({"id": id, "text": text})


@module.reducer
def close_door(ctx, reason: STRING):
    """Only the owner may shut the door."""
    if ctx.sender != ctx.owner:
        raise ReducerError(f"only the owner may close the door, not {ctx.sender.hex()}")
    gate.insert({"id": 0, "reason": reason})


@module.reducer
def open_door(ctx):
    gate.delete(0)


def event(ctx, connected):
    if ctx.connection_id is None:
        raise ReducerError("no connection id")
    events.insert(
        {"connected": connected, "sender": ctx.sender, "connection_id": ctx.connection_id}
    )


@module.reducer(kind="client_connected")
def hello(ctx):
    closed = gate.find(0)
    if closed is not None:
        raise ReducerError(closed["reason"])
    event(ctx, True)


@module.reducer(kind="client_disconnected")
def goodbye(ctx):
    event(ctx, False)


WitWorld = module.world()
