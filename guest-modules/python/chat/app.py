"""Users and channel messages, in Python: the same tables, reducers and
errors as the Rust `chat` (guest-modules/examples/chat), with auto-increment
ids, a unique column, a B-tree index, an optional column, an ephemeral
table and an init reducer."""

from interstice import (
    I64,
    STRING,
    U64,
    Column,
    Index,
    Module,
    ReducerError,
    Table,
    log,
    optional,
)

users = Table(
    "users",
    [
        Column("id", U64),
        Column("name", STRING),
        Column("bio", optional(STRING)),
        Column("joined_micros", I64),
    ],
    primary_key="id",
    auto_inc="id",
    indexes=[Index("name", "name", unique=True)],
    public=True,
)

messages = Table(
    "messages",
    [
        Column("id", U64),
        Column("channel", STRING),
        Column("sender", U64),
        Column("text", STRING),
        Column("sent_micros", I64),
    ],
    primary_key="id",
    auto_inc="id",
    indexes=[Index("channel", "channel")],
    public=True,
)

# Users currently typing: never logged, empty after every restart.
typing = Table(
    "typing",
    [Column("user", U64), Column("channel", STRING)],
    primary_key="user",
    ephemeral=True,
    public=True,
)

module = Module(tables=[users, messages, typing])

MESSAGE_LEN_MAX = 4096


def quoted(text):
    """A string as Rust's `{:?}` writes it (for the names used here)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def user_named(name):
    user = users.find_by("name", name)
    if user is None:
        raise ReducerError(f"no user named {quoted(name)}")
    return user


@module.reducer(kind="init")
def init(ctx):
    """Runs once, at first publication: the system user posts a welcome."""
    register(ctx, "system", None)
    send(ctx, "system", "general", "welcome")


@module.reducer
def register(ctx, name: STRING, bio: optional(STRING)):
    if not name:
        raise ReducerError("a user name must not be empty")
    try:
        users.insert({"name": name, "bio": bio, "joined_micros": ctx.timestamp_micros})
    except ReducerError:
        raise ReducerError(f"user name {quoted(name)} is taken") from None


@module.reducer
def send(ctx, sender: STRING, channel: STRING, text: STRING):
    if len(text.encode("utf-8")) > MESSAGE_LEN_MAX:
        raise ReducerError(f"a message holds at most {MESSAGE_LEN_MAX} bytes")
    user = user_named(sender)
    typing.delete(user["id"])
    messages.insert(
        {
            "channel": channel,
            "sender": user["id"],
            "text": text,
            "sent_micros": ctx.timestamp_micros,
        }
    )


@module.reducer
def start_typing(ctx, sender: STRING, channel: STRING):
    user = user_named(sender)
    typing.delete(user["id"])
    typing.insert({"user": user["id"], "channel": channel})


@module.reducer
def clear_channel(ctx, channel: STRING):
    """Deletes every message of `channel`."""
    ids = [m["id"] for m in messages.scan("channel", channel, channel, high_inclusive=True)]
    for id in ids:
        messages.delete(id)
    log("info", f"cleared channel {channel}")


@module.reducer
def rename(ctx, old: STRING, new: STRING):
    user = user_named(old)
    user["name"] = new
    users.update(user)


WitWorld = module.world()
