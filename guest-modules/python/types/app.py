"""Every type and every kind of index, in Python: the same tables, reducers
and errors as the Rust `types` guest (guest-modules/test-modules/types), so
that the same calls write the same log (tests/tests/determinism.rs)."""

from interstice import (
    BOOL,
    BYTES,
    DURATION,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    I128,
    IDENTITY,
    STRING,
    TIMESTAMP,
    U8,
    U16,
    U32,
    U64,
    U128,
    Column,
    Enum,
    Index,
    Module,
    ReducerError,
    Struct,
    Table,
    optional,
    vec,
)

Pos = Struct("Pos", x=F32, y=F32)
Kind = Enum("Kind", Sword=None, Bow=U8, Pair=(U8, U16), Staff={"power": U16, "name": STRING})
Item = Struct("Item", kind=Kind, count=U32, tags=vec(STRING))

EVERYTHING_COLUMNS = [
    ("id", U128),
    ("flag", BOOL),
    ("a", U8),
    ("b", U16),
    ("c", U32),
    ("d", U64),
    ("e", I8),
    ("f", I16),
    ("g", I32),
    ("h", I64),
    ("i", I128),
    ("j", F32),
    ("k", F64),
    ("text", STRING),
    ("raw", BYTES),
    ("who", IDENTITY),
    ("at", TIMESTAMP),
    ("took", DURATION),
    ("pos", Pos),
    ("kind", Kind),
    ("inventory", vec(Item)),
    ("maybe", optional(vec(optional(I32)))),
]
Everything = Struct("Everything", **dict(EVERYTHING_COLUMNS))

everything = Table(
    "everything",
    [Column(name, ty) for name, ty in EVERYTHING_COLUMNS],
    primary_key="id",
    public=True,
)

moves = Table(
    "moves",
    [
        Column("id", U64),
        Column("game", U32),
        Column("turn", U16),
        Column("player", IDENTITY),
        Column("tag", STRING),
        Column("x", U8),
        Column("y", U8),
        Column("kind", Kind),
        Column("at", TIMESTAMP),
    ],
    primary_key="id",
    auto_inc="id",
    indexes=[
        Index("player", "player", kind="hash"),
        Index("tag", "tag", unique=True, kind="hash"),
        Index("kind", "kind"),
        Index("at", "at", unique=True),
        Index("by_game_turn", columns=["game", "turn"]),
        Index("by_cell", columns=["game", "x", "y"], unique=True, kind="hash"),
        Index("by_game_kind", columns=["game", "kind"], kind="hash"),
    ],
    public=True,
)

found = Table("found", [Column("lookup", STRING), Column("ids", vec(U64))], primary_key="lookup", public=True)

module = Module(tables=[everything, moves, found])


@module.reducer
def play(ctx, game: U32, turn: U16, player: IDENTITY, tag: STRING, x: U8, y: U8, kind: Kind):
    moves.insert(
        {"game": game, "turn": turn, "player": player, "tag": tag, "x": x, "y": y, "kind": kind, "at": ctx.timestamp}
    )


@module.reducer
def find(ctx, game: U32, from_: U16, to: U16, player: IDENTITY, tag: STRING, x: U8, y: U8, kind: Kind):
    def ids(rows):
        return [m["id"] for m in rows]

    def one(row):
        return [] if row is None else [row["id"]]

    lookups = [
        ("whole key", ids(moves.filter("by_game_turn", (game, from_)))),
        ("prefix", ids(moves.filter("by_game_turn", game))),
        ("range on the last column", ids(moves.scan("by_game_turn", low=(game, from_), high=(game, to)))),
        (
            "inclusive range",
            ids(moves.scan("by_game_turn", low=(game, from_), high=(game, to), high_inclusive=True)),
        ),
        ("open range", ids(moves.scan("by_game_turn", low=(game, from_), high=(game,), high_inclusive=True))),
        ("range on the first column", ids(moves.scan("by_game_turn", low=game, high=game + 1, high_inclusive=True))),
        ("everything", ids(moves.scan("by_game_turn"))),
        ("player", ids(moves.filter("player", player))),
        ("tag", one(moves.find_by("tag", tag))),
        ("cell", one(moves.find_by("by_cell", (game, x, y)))),
        ("game and kind", ids(moves.filter("by_game_kind", (game, kind)))),
        ("kind and after", ids(moves.scan("kind", low=kind))),
    ]
    for row in list(found):
        found.delete(row["lookup"])
    for lookup, row_ids in lookups:
        found.insert({"lookup": lookup, "ids": row_ids})


@module.reducer
def take_back(ctx, tag: STRING):
    if not moves.delete_by("tag", tag):
        raise ReducerError(f'no move tagged "{tag}"')


@module.reducer
def put(ctx, row: Everything):
    if everything.find(row["id"]) is not None:
        everything.update(row)
    else:
        everything.insert(row)


@module.reducer
def move_to(ctx, id: U128, pos: Pos, kind: Kind, since: TIMESTAMP, who: IDENTITY):
    row = everything.find(id)
    if row is None:
        raise ReducerError(f"no row {id}")
    row["pos"] = pos
    row["kind"] = kind
    row["at"] = ctx.timestamp + 1000
    row["took"] = ctx.timestamp - since
    row["who"] = who
    everything.update(row)


WitWorld = module.world()
