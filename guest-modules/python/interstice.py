"""The Interstice SDK for Python reducer modules.

A module declares its tables and reducers with this file's classes and
exports them with ``WitWorld = module.world()``; componentize-py builds it
against ``wit/interstice.wit`` (``interstice build <dir>`` does both). Rows
are dicts keyed by column name; reducer arguments arrive as Python values.
Everything crosses the boundary in the canonical row encoding
(docs/row-encoding.md, version 1), which this file implements.

Raising ``ReducerError(message)`` (or any other exception) rolls the
transaction back; the call fails with the message. ``print`` goes to the
module's log. Time and randomness come from the transaction: ``ctx``, or
``time.time()`` and ``random``, which the host makes deterministic.
"""

import inspect
import struct
import traceback

from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports import types as wit

ABI_VERSION = 1

__all__ = [
    "ABI_VERSION", "BOOL", "I32", "I64", "U32", "U64", "F64", "STRING", "BYTES",
    "optional", "Column", "Index", "Table", "Module", "Context", "ReducerError",
    "log",
]


class ReducerError(Exception):
    """Rolls the transaction back; the call fails with this message."""


class Type:
    """A column or parameter type: a scalar, optionally nullable."""

    def __init__(self, scalar, optional=False):
        self.scalar = scalar
        self.optional = optional

    def __repr__(self):
        name = self.scalar.name.lower()
        return f"optional({name})" if self.optional else name

    def wit(self):
        return wit.ColumnType(scalar=self.scalar, optional=self.optional)

    def encode(self, value, out, what):
        if self.optional:
            if value is None:
                out.append(0)
                return
            out.append(1)
        elif value is None:
            raise ReducerError(f"{what}: None is not a {self!r}")
        _ENCODERS[self.scalar](value, out, what)

    def decode(self, buf, pos):
        if self.optional:
            tag = buf[pos]
            pos += 1
            if tag == 0:
                return None, pos
        return _DECODERS[self.scalar](buf, pos)


def _int_encoder(fmt, low, high):
    packer = struct.Struct(fmt)

    def encode(value, out, what):
        if type(value) is not int or not low <= value <= high:
            raise ReducerError(f"{what}: {value!r} is not an integer in [{low}, {high}]")
        out += packer.pack(value)

    return encode


def _fixed_decoder(fmt):
    unpacker = struct.Struct(fmt)

    def decode(buf, pos):
        return unpacker.unpack_from(buf, pos)[0], pos + unpacker.size

    return decode


def _encode_bool(value, out, what):
    if type(value) is not bool:
        raise ReducerError(f"{what}: {value!r} is not a bool")
    out.append(1 if value else 0)


def _encode_f64(value, out, what):
    if type(value) not in (int, float):
        raise ReducerError(f"{what}: {value!r} is not a number")
    out += struct.pack("<d", float(value))


def _encode_blob(data, out):
    out += struct.pack("<I", len(data))
    out += data


def _encode_string(value, out, what):
    if type(value) is not str:
        raise ReducerError(f"{what}: {value!r} is not a str")
    _encode_blob(value.encode("utf-8"), out)


def _encode_bytes(value, out, what):
    if type(value) not in (bytes, bytearray):
        raise ReducerError(f"{what}: {value!r} is not bytes")
    _encode_blob(bytes(value), out)


def _decode_blob(buf, pos):
    (n,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    return bytes(buf[pos:pos + n]), pos + n


def _decode_string(buf, pos):
    data, pos = _decode_blob(buf, pos)
    return data.decode("utf-8"), pos


S = wit.ScalarType
_ENCODERS = {
    S.BOOL: _encode_bool,
    S.I32: _int_encoder("<i", -(2**31), 2**31 - 1),
    S.I64: _int_encoder("<q", -(2**63), 2**63 - 1),
    S.U32: _int_encoder("<I", 0, 2**32 - 1),
    S.U64: _int_encoder("<Q", 0, 2**64 - 1),
    S.F64: _encode_f64,
    S.STRING: _encode_string,
    S.BYTES: _encode_bytes,
}
_DECODERS = {
    S.BOOL: lambda buf, pos: (buf[pos] == 1, pos + 1),
    S.I32: _fixed_decoder("<i"),
    S.I64: _fixed_decoder("<q"),
    S.U32: _fixed_decoder("<I"),
    S.U64: _fixed_decoder("<Q"),
    S.F64: _fixed_decoder("<d"),
    S.STRING: _decode_string,
    S.BYTES: _decode_blob,
}

BOOL = Type(S.BOOL)
I32 = Type(S.I32)
I64 = Type(S.I64)
U32 = Type(S.U32)
U64 = Type(S.U64)
F64 = Type(S.F64)
STRING = Type(S.STRING)
BYTES = Type(S.BYTES)


def optional(ty):
    """The nullable form of a scalar type: None or a value."""
    if ty.optional:
        raise TypeError("optional(optional(...)) is not a column type")
    return Type(ty.scalar, optional=True)


class Column:
    """A column: its name, its type and, for columns a later version adds,
    the value existing rows get."""

    _NO_DEFAULT = object()

    def __init__(self, name, ty, default=_NO_DEFAULT):
        self.name = name
        self.ty = ty
        self.default = default

    def wit(self):
        default = None
        if self.default is not Column._NO_DEFAULT:
            out = bytearray()
            self.ty.encode(self.default, out, f"default of column `{self.name}`")
            default = bytes(out)
        return wit.ColumnDef(name=self.name, ty=self.ty.wit(), default=default)


class Index:
    """A secondary index over one column; ``unique`` rejects duplicates."""

    def __init__(self, name, column, unique=False):
        self.name = name
        self.column = column
        self.unique = unique


_MISSING = object()


class Table:
    """A table of the module, and the operations reducers use on it."""

    def __init__(self, name, columns, primary_key, auto_inc=None, indexes=(), ephemeral=False):
        self.name = name
        self.columns = list(columns)
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise TypeError(f"table `{name}`: column names repeat")
        self._pos = {c.name: i for i, c in enumerate(self.columns)}
        self.primary_key = self._pos[primary_key]
        self.auto_inc = None if auto_inc is None else self._pos[auto_inc]
        self.indexes = list(indexes)
        self.ephemeral = ephemeral
        self.id = None

    def wit(self):
        return wit.TableDef(
            name=self.name,
            columns=[c.wit() for c in self.columns],
            primary_key=self.primary_key,
            auto_inc=self.auto_inc,
            indexes=[
                wit.IndexDef(name=i.name, column=self._pos[i.column], unique=i.unique)
                for i in self.indexes
            ],
            ephemeral=self.ephemeral,
        )

    # Encoding.

    def encode(self, row):
        out = bytearray()
        for i, column in enumerate(self.columns):
            value = row.get(column.name, _MISSING)
            if value is _MISSING:
                if i == self.auto_inc:
                    value = 0
                elif column.ty.optional:
                    value = None
                else:
                    raise ReducerError(f"table `{self.name}`: the row has no column `{column.name}`")
            column.ty.encode(value, out, f"column `{self.name}.{column.name}`")
        return bytes(out)

    def decode(self, data):
        row = {}
        pos = 0
        for column in self.columns:
            row[column.name], pos = column.ty.decode(data, pos)
        return row

    def _key(self, column, value):
        out = bytearray()
        ty = self.columns[column].ty
        ty.encode(value, out, f"key of `{self.name}.{self.columns[column].name}`")
        return bytes(out)

    def _index_id(self, name):
        if name is None:
            return 0, self.primary_key
        for i, index in enumerate(self.indexes):
            if index.name == name:
                return i + 1, self._pos[index.column]
        raise ReducerError(f"table `{self.name}` has no index `{name}`")

    # Operations.

    def insert(self, row):
        """Inserts a row; returns it as stored (auto-increment filled in)."""
        return self.decode(_host(host.insert, self.id, self.encode(row)))

    def update(self, row):
        """Replaces the row with the same primary key."""
        _host(host.update, self.id, self.encode(row))

    def delete(self, key):
        """Deletes the row with this primary key; False if there was none."""
        return _host(host.delete, self.id, self._key(self.primary_key, key))

    def find(self, key):
        """The row with this primary key, or None."""
        data = _host(host.get, self.id, self._key(self.primary_key, key))
        return None if data is None else self.decode(data)

    def find_by(self, index, key):
        """The row whose unique index ``index`` holds ``key``, or None."""
        index_id, column = self._index_id(index)
        data = _host(host.lookup_unique, self.id, index_id, self._key(column, key))
        return None if data is None else self.decode(data)

    def scan(self, index=None, low=None, high=None, high_inclusive=False):
        """Rows in index order (the primary key's when ``index`` is None)
        from ``low`` (included) to ``high`` (excluded, unless
        ``high_inclusive``); None leaves a side unbounded."""
        index_id, column = self._index_id(index)
        lower = wit.Bound_Unbounded() if low is None else wit.Bound_Included(self._key(column, low))
        if high is None:
            upper = wit.Bound_Unbounded()
        elif high_inclusive:
            upper = wit.Bound_Included(self._key(column, high))
        else:
            upper = wit.Bound_Excluded(self._key(column, high))
        cursor = _host(host.scan, self.id, index_id, lower, upper)
        with cursor:
            while True:
                batch = cursor.next_batch(256)
                if not batch:
                    return
                for data in batch:
                    yield self.decode(data)

    def __iter__(self):
        return self.scan()

    def count(self):
        """Number of rows."""
        return _host(host.count, self.id)


def _db_error(e):
    if isinstance(e, wit.DbError_NoSuchTable):
        return f"no table with id {e.value}"
    if isinstance(e, wit.DbError_NoSuchIndex):
        return f"no index with id {e.value}"
    if isinstance(e, wit.DbError_InvalidRow):
        return f"invalid row: {e.value}"
    if isinstance(e, wit.DbError_NotFound):
        return "no row with that primary key"
    return e.value


def _host(fn, *args):
    try:
        return fn(*args)
    except Err as e:
        raise ReducerError(_db_error(e.value)) from None


class Context:
    """What a reducer learns of its call."""

    __slots__ = ("tx_id", "timestamp_micros", "caller", "seed")

    def __init__(self, ctx):
        self.tx_id = ctx.tx_id
        self.timestamp_micros = ctx.timestamp_micros
        self.caller = ctx.caller
        self.seed = ctx.seed


_KINDS = {
    "normal": wit.ReducerKind.NORMAL,
    "init": wit.ReducerKind.INIT,
    "migrate": wit.ReducerKind.MIGRATE,
}


class _Reducer:
    def __init__(self, fn, kind):
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if not params:
            raise TypeError(f"reducer `{fn.__name__}` must take the context first")
        self.params = []
        for p in params[1:]:
            if not isinstance(p.annotation, Type):
                raise TypeError(
                    f"reducer `{fn.__name__}`: parameter `{p.name}` needs a column type annotation"
                )
            # `from_` declares a parameter named `from`: a trailing
            # underscore is how Python spells a name that is a keyword.
            name = p.name[:-1] if p.name.endswith("_") and not p.name.endswith("__") else p.name
            self.params.append((name, p.annotation))
        self.fn = fn
        self.name = fn.__name__
        self.kind = kind

    def wit(self):
        return wit.ReducerDef(
            name=self.name,
            params=[wit.ParamDef(name=n, ty=t.wit()) for n, t in self.params],
            kind=_KINDS[self.kind],
        )

    def decode_args(self, data):
        args = []
        pos = 0
        for name, ty in self.params:
            try:
                value, pos = ty.decode(data, pos)
            except (struct.error, IndexError, UnicodeDecodeError) as e:
                raise ReducerError(f"argument `{name}`: {e}") from None
            args.append(value)
        if pos != len(data):
            raise ReducerError("trailing bytes after the last argument")
        return args


class Module:
    """A module: its tables (ids in list order) and its reducers (ids in
    declaration order)."""

    def __init__(self, tables):
        self.tables = list(tables)
        for i, table in enumerate(self.tables):
            table.id = i
        self.reducers = []

    def reducer(self, fn=None, *, kind="normal"):
        """Decorator: ``@module.reducer``, or ``@module.reducer(kind="init")``
        for the reducer run once at first publication (``"migrate"``: at
        each publication of a new version)."""
        if kind not in _KINDS:
            raise TypeError(f"reducer kind must be one of {sorted(_KINDS)}")

        def register(f):
            self.reducers.append(_Reducer(f, kind))
            return f

        return register if fn is None else register(fn)

    def world(self):
        """The class componentize-py exports: ``WitWorld = module.world()``."""
        module = self

        class WitWorld:
            def describe(self):
                return wit.ModuleDef(
                    abi_version=ABI_VERSION,
                    tables=[t.wit() for t in module.tables],
                    reducers=[r.wit() for r in module.reducers],
                )

            def call_reducer(self, ctx, reducer, args):
                if reducer >= len(module.reducers):
                    raise Err(f"no reducer with id {reducer}")
                r = module.reducers[reducer]
                try:
                    r.fn(Context(ctx), *r.decode_args(args))
                except ReducerError as e:
                    raise Err(str(e)) from None
                except Exception as e:
                    traceback.print_exc()
                    raise Err(f"reducer `{r.name}` raised {type(e).__name__}: {e}") from None

        return WitWorld


_LEVELS = {
    "error": wit.LogLevel.ERROR,
    "warn": wit.LogLevel.WARN,
    "info": wit.LogLevel.INFO,
    "debug": wit.LogLevel.DEBUG,
    "trace": wit.LogLevel.TRACE,
}


def log(level, message):
    """A line for the module's log at ``level`` ("error" ... "trace")."""
    host.log(_LEVELS[level], message)

