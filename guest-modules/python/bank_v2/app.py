"""The Python bank's second version, the same as the Rust `bank-v2`
(guest-modules/test-modules/bank-v2): additive changes only, so publishing
it over the bank migrates automatically. Accounts gain a column with a
declared default and an optional one, an index on the new column; a new
table (listed first, so table ids move) and a new reducer appear."""

from interstice import STRING, U32, U64, Column, Index, Module, ReducerError, Table, optional

audit = Table(
    "audit",
    [Column("id", U64), Column("account", U64), Column("note", STRING)],
    primary_key="id",
    auto_inc="id",
    public=True,
)

accounts = Table(
    "accounts",
    [
        Column("id", U64),
        Column("balance", U64),
        Column("branch", U32, default=7),
        Column("owner", optional(STRING)),
    ],
    primary_key="id",
    indexes=[Index("branch", "branch")],
    public=True,
)

module = Module(tables=[audit, accounts])

U64_MAX = 2**64 - 1


def account(id):
    found = accounts.find(id)
    if found is None:
        raise ReducerError(f"account {id} does not exist")
    return found


@module.reducer
def open_account(ctx, id: U64, balance: U64):
    try:
        accounts.insert({"id": id, "balance": balance, "branch": 1, "owner": None})
    except ReducerError:
        raise ReducerError(f"account {id} already exists") from None


@module.reducer
def deposit(ctx, id: U64, amount: U64):
    found = account(id)
    if found["balance"] + amount > U64_MAX:
        raise ReducerError(f"deposit would overflow account {id}")
    found["balance"] += amount
    accounts.update(found)


@module.reducer
def transfer(ctx, from_: U64, to: U64, amount: U64):
    source = account(from_)
    target = account(to)
    if source["balance"] < amount:
        raise ReducerError(
            f"insufficient funds: account {from_} holds {source['balance']}, transfer needs {amount}"
        )
    if from_ == to:
        return
    source["balance"] -= amount
    target["balance"] += amount
    accounts.update(source)
    accounts.update(target)


@module.reducer
def set_owner(ctx, id: U64, owner: STRING):
    """New in this version."""
    found = account(id)
    found["owner"] = owner
    accounts.update(found)
    audit.insert({"account": id, "note": f"owner set to {owner}"})


WitWorld = module.world()
