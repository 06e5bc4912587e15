"""The fund-transfer workload, in Python: the same tables, reducers and
errors as the Rust `bank` (guest-modules/examples/bank)."""

from interstice import U64, Column, Module, ReducerError, Table

accounts = Table(
    "accounts",
    [Column("id", U64), Column("balance", U64)],
    primary_key="id",
    public=True,
)

module = Module(tables=[accounts])

U64_MAX = 2**64 - 1


@module.reducer
def open_account(ctx, id: U64, balance: U64):
    """Opens account `id` with an initial balance; fails if it exists."""
    if accounts.find(id) is not None:
        raise ReducerError(f"account {id} already exists")
    accounts.insert({"id": id, "balance": balance})


@module.reducer
def deposit(ctx, id: U64, amount: U64):
    """Adds `amount` to account `id`."""
    account = accounts.find(id)
    if account is None:
        raise ReducerError(f"account {id} does not exist")
    if account["balance"] + amount > U64_MAX:
        raise ReducerError(f"deposit would overflow account {id}")
    account["balance"] += amount
    accounts.update(account)


@module.reducer
def transfer(ctx, from_: U64, to: U64, amount: U64):
    """Moves `amount` from account `from` to account `to`."""
    source = accounts.find(from_)
    if source is None:
        raise ReducerError(f"account {from_} does not exist")
    target = accounts.find(to)
    if target is None:
        raise ReducerError(f"account {to} does not exist")
    if source["balance"] < amount:
        raise ReducerError(
            f"insufficient funds: account {from_} holds {source['balance']}, transfer needs {amount}"
        )
    if from_ == to:
        return
    if target["balance"] + amount > U64_MAX:
        raise ReducerError(f"transfer would overflow account {to}")
    source["balance"] -= amount
    target["balance"] += amount
    accounts.update(source)
    accounts.update(target)


WitWorld = module.world()
