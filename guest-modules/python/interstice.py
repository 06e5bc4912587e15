"""The Interstice SDK for Python reducer modules.

A module declares its tables and reducers with this file's classes and
exports them with ``WitWorld = module.world()``; componentize-py builds it
against ``wit/interstice.wit`` (``interstice build <dir>`` does both). Rows
are dicts keyed by column name; reducer arguments arrive as Python values.
Everything crosses the boundary in the canonical row encoding
(docs/row-encoding.md, version 2), which this file implements.

Types and the Python values of each:

- ``BOOL``: ``bool``; ``U8`` ... ``U128``, ``I8`` ... ``I128``: ``int``;
  ``F32``, ``F64``: ``float`` (an ``int`` is accepted); ``STRING``: ``str``;
  ``BYTES``: ``bytes``;
- ``IDENTITY``: 32 ``bytes``; ``TIMESTAMP`` (µs since the Unix epoch) and
  ``DURATION`` (µs): ``int``;
- ``optional(T)``: ``None`` or a value of T; ``vec(T)``: a ``list``;
- ``Struct("Pos", x=F32, y=F32)``: a ``dict`` keyed by field name;
- ``Enum("Kind", Sword=None, Bow=U8, Pair=(U8, U16), Staff={"power": U16})``:
  a unit variant is its name (``"Sword"``), any other a one-key dict whose
  value is the payload: the value of a one-field tuple variant
  (``{"Bow": 3}``), a list for several (``{"Pair": [1, 2]}``), a dict for a
  struct variant (``{"Staff": {"power": 9}}``). This is the JSON form of
  docs/row-encoding.md.

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

ABI_VERSION = 2

__all__ = [
    "ABI_VERSION", "BOOL", "U8", "U16", "U32", "U64", "U128", "I8", "I16", "I32", "I64",
    "I128", "F32", "F64", "STRING", "BYTES", "IDENTITY", "TIMESTAMP", "DURATION",
    "optional", "vec", "Struct", "Enum", "Column", "Index", "Table", "Module", "Context",
    "ReducerError", "log",
]

class ReducerError(Exception):
    """Rolls the transaction back; the call fails with this message."""


class _Typespace:
    """The typespace a module describes: every type once, by index."""

    def __init__(self):
        self.types = []
        self._index = {}

    def add(self, key, make):
        """The index of the type ``key`` names, adding ``make()`` the first
        time. The index is reserved first, so a named type's fields may
        refer to types added after it."""
        if key in self._index:
            return self._index[key]
        index = len(self.types)
        self._index[key] = index
        self.types.append(None)
        self.types[index] = make()
        return index


class Type:
    """A column or parameter type."""

    optional = False

    def encode(self, value, out, what):
        raise NotImplementedError

    def decode(self, buf, pos):
        raise NotImplementedError

    def index(self, space):
        """This type's index in ``space``, adding it and what it contains."""
        raise NotImplementedError


class _Scalar(Type):
    def __init__(self, scalar, encode, decode):
        self.scalar = scalar
        self._encode = encode
        self._decode = decode

    def __repr__(self):
        return self.scalar.name.lower()

    def encode(self, value, out, what):
        if value is None:
            raise ReducerError(f"{what}: None is not a {self!r}")
        self._encode(value, out, what)

    def decode(self, buf, pos):
        return self._decode(buf, pos)

    def index(self, space):
        return space.add(("scalar", self.scalar), lambda: wit.TypeDef_Scalar(self.scalar))


class _Option(Type):
    optional = True

    def __init__(self, inner):
        self.inner = inner

    def __repr__(self):
        return f"optional({self.inner!r})"

    def encode(self, value, out, what):
        if value is None:
            out.append(0)
            return
        out.append(1)
        self.inner.encode(value, out, what)

    def decode(self, buf, pos):
        tag = buf[pos]
        if tag == 0:
            return None, pos + 1
        if tag != 1:
            raise ValueError(f"invalid option tag {tag}")
        return self.inner.decode(buf, pos + 1)

    def index(self, space):
        inner = self.inner.index(space)
        return space.add(("option", inner), lambda: wit.TypeDef_Option(inner))


class _Vec(Type):
    def __init__(self, element):
        self.element = element

    def __repr__(self):
        return f"vec({self.element!r})"

    def encode(self, value, out, what):
        if type(value) not in (list, tuple):
            raise ReducerError(f"{what}: {value!r} is not a list")
        out += struct.pack("<I", len(value))
        for i, element in enumerate(value):
            self.element.encode(element, out, f"{what}[{i}]")

    def decode(self, buf, pos):
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if n > len(buf) - pos:
            raise ValueError(f"vec of {n} elements in {len(buf) - pos} bytes")
        values = []
        for _ in range(n):
            value, pos = self.element.decode(buf, pos)
            values.append(value)
        return values, pos

    def index(self, space):
        element = self.element.index(space)
        return space.add(("vec", element), lambda: wit.TypeDef_Vec(element))


def _fields_of(what, fields):
    fields = list(fields.items())
    for name, ty in fields:
        if not isinstance(ty, Type):
            raise TypeError(f"{what}: field `{name}` needs a type, not {ty!r}")
    return fields


def _encode_fields(fields, value, out, what):
    if type(value) is not dict:
        raise ReducerError(f"{what}: {value!r} is not a dict")
    for name, ty in fields:
        if name not in value:
            raise ReducerError(f"{what}.{name}: missing")
        ty.encode(value[name], out, f"{what}.{name}")
    extra = set(value) - {name for name, _ in fields}
    if extra:
        raise ReducerError(f"{what}: unknown field `{sorted(extra)[0]}`")


def _decode_fields(fields, buf, pos):
    value = {}
    for name, ty in fields:
        value[name], pos = ty.decode(buf, pos)
    return value, pos


def _field_defs(space, fields):
    return [wit.FieldDef(name=name, ty=ty.index(space)) for name, ty in fields]


class Struct(Type):
    """A product type: ``Struct("Pos", x=F32, y=F32)``; values are dicts."""

    def __init__(self, name, /, **fields):
        if not fields:
            raise TypeError(f"struct `{name}` needs at least one field")
        self.name = name
        self.fields = _fields_of(f"struct `{name}`", fields)

    def __repr__(self):
        return self.name

    def encode(self, value, out, what):
        _encode_fields(self.fields, value, out, what)

    def decode(self, buf, pos):
        return _decode_fields(self.fields, buf, pos)

    def index(self, space):
        return space.add(
            ("named", id(self)),
            lambda: wit.TypeDef_Product(
                wit.ProductDef(name=self.name, fields=_field_defs(space, self.fields))
            ),
        )


class _Variant:
    """One variant of an enum: its shape and its fields (named ``0``, ``1``,
    ... for a tuple variant)."""

    def __init__(self, enum, name, payload):
        self.name = name
        what = f"variant `{enum}.{name}`"
        if payload is None:
            self.shape, self.fields = wit.VariantShape.UNIT, []
        elif isinstance(payload, Type):
            self.shape, self.fields = wit.VariantShape.TUPLE, [("0", payload)]
        elif type(payload) is tuple and payload:
            self.shape = wit.VariantShape.TUPLE
            self.fields = _fields_of(what, {str(i): t for i, t in enumerate(payload)})
        elif type(payload) is dict and payload:
            self.shape, self.fields = wit.VariantShape.STRUCT, _fields_of(what, payload)
        else:
            raise TypeError(f"{what}: the payload is None, a type, a tuple or a dict of types")

    def encode(self, payload, out, what):
        what = f"{what}.{self.name}"
        if self.shape == wit.VariantShape.STRUCT:
            _encode_fields(self.fields, payload, out, what)
        elif len(self.fields) == 1:
            self.fields[0][1].encode(payload, out, what)
        else:
            if type(payload) not in (list, tuple) or len(payload) != len(self.fields):
                raise ReducerError(f"{what}: {payload!r} is not a list of {len(self.fields)} values")
            for i, ((_, ty), v) in enumerate(zip(self.fields, payload)):
                ty.encode(v, out, f"{what}[{i}]")

    def decode(self, buf, pos):
        if self.shape == wit.VariantShape.UNIT:
            return self.name, pos
        fields, pos = _decode_fields(self.fields, buf, pos)
        if self.shape == wit.VariantShape.STRUCT:
            payload = fields
        elif len(self.fields) == 1:
            payload = fields["0"]
        else:
            payload = [fields[name] for name, _ in self.fields]
        return {self.name: payload}, pos


class Enum(Type):
    """A sum type: ``Enum("Kind", Sword=None, Bow=U8, Pair=(U8, U16),
    Staff={"power": U16})``, variants in that order; values as the module
    docstring says."""

    def __init__(self, name, /, **variants):
        if not 1 <= len(variants) <= 256:
            raise TypeError(f"enum `{name}` needs 1 to 256 variants")
        self.name = name
        self.variants = [_Variant(name, v, payload) for v, payload in variants.items()]
        self._tags = {v.name: i for i, v in enumerate(self.variants)}

    def __repr__(self):
        return self.name

    def encode(self, value, out, what):
        if type(value) is str:
            name, payload = value, None
        elif type(value) is dict and len(value) == 1:
            ((name, payload),) = value.items()
        else:
            raise ReducerError(f"{what}: {value!r} is not a variant name or a one-key dict")
        tag = self._tags.get(name)
        if tag is None:
            raise ReducerError(f"{what}: unknown variant {name!r}")
        variant = self.variants[tag]
        if (variant.shape == wit.VariantShape.UNIT) != (type(value) is str):
            form = "its name" if variant.shape == wit.VariantShape.UNIT else "{name: payload}"
            raise ReducerError(f"{what}: variant {name!r} is written as {form}")
        out.append(tag)
        if variant.shape != wit.VariantShape.UNIT:
            variant.encode(payload, out, what)

    def decode(self, buf, pos):
        tag = buf[pos]
        if tag >= len(self.variants):
            raise ValueError(f"invalid variant tag {tag}")
        return self.variants[tag].decode(buf, pos + 1)

    def index(self, space):
        def make():
            return wit.TypeDef_Sum(
                wit.SumDef(
                    name=self.name,
                    variants=[
                        wit.VariantDef(name=v.name, shape=v.shape, fields=_field_defs(space, v.fields))
                        for v in self.variants
                    ],
                )
            )

        return space.add(("named", id(self)), make)


def _int_encoder(fmt, low, high):
    packer = struct.Struct(fmt)

    def encode(value, out, what):
        if type(value) is not int or not low <= value <= high:
            raise ReducerError(f"{what}: {value!r} is not an integer in [{low}, {high}]")
        out += packer.pack(value)

    return encode


def _wide_encoder(signed):
    low, high = (-(2**127), 2**127 - 1) if signed else (0, 2**128 - 1)

    def encode(value, out, what):
        if type(value) is not int or not low <= value <= high:
            raise ReducerError(f"{what}: {value!r} is not an integer in [{low}, {high}]")
        out += value.to_bytes(16, "little", signed=signed)

    return encode


def _wide_decoder(signed):
    def decode(buf, pos):
        if len(buf) - pos < 16:
            raise ValueError("truncated 128-bit integer")
        return int.from_bytes(bytes(buf[pos:pos + 16]), "little", signed=signed), pos + 16

    return decode


def _fixed_decoder(fmt):
    unpacker = struct.Struct(fmt)

    def decode(buf, pos):
        return unpacker.unpack_from(buf, pos)[0], pos + unpacker.size

    return decode


def _encode_bool(value, out, what):
    if type(value) is not bool:
        raise ReducerError(f"{what}: {value!r} is not a bool")
    out.append(1 if value else 0)


def _decode_bool(buf, pos):
    b = buf[pos]
    if b > 1:
        raise ValueError(f"invalid bool {b}")
    return b == 1, pos + 1


def _float_encoder(fmt):
    packer = struct.Struct(fmt)

    def encode(value, out, what):
        if type(value) not in (int, float):
            raise ReducerError(f"{what}: {value!r} is not a number")
        try:
            out += packer.pack(float(value))
        except (OverflowError, struct.error):
            raise ReducerError(f"{what}: {value!r} does not fit in {packer.size * 8} bits") from None

    return encode


def _encode_f32(value, out, what):
    # A NaN keeps its sign and payload (docs/row-encoding.md): narrowed by
    # hand, since a C cast of a signaling NaN would quiet it.
    if type(value) is float and value != value:
        (bits,) = struct.unpack("<Q", struct.pack("<d", value))
        mantissa = (bits >> 29) & 0x7FFFFF
        out += struct.pack("<I", ((bits >> 63) << 31) | (0xFF << 23) | (mantissa or 0x400000))
        return
    _encode_f32_number(value, out, what)


_encode_f32_number = _float_encoder("<f")


def _decode_f32(buf, pos):
    (bits,) = struct.unpack_from("<I", buf, pos)
    if bits & 0x7F800000 == 0x7F800000 and bits & 0x7FFFFF:
        # A NaN: widened by hand, payload and sign kept.
        wide = ((bits >> 31) << 63) | (0x7FF << 52) | ((bits & 0x7FFFFF) << 29)
        return struct.unpack("<d", struct.pack("<Q", wide))[0], pos + 4
    return struct.unpack_from("<f", buf, pos)[0], pos + 4


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


def _encode_identity(value, out, what):
    if type(value) not in (bytes, bytearray) or len(value) != 32:
        raise ReducerError(f"{what}: {value!r} is not 32 bytes")
    out += value


def _decode_blob(buf, pos):
    (n,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    if n > len(buf) - pos:
        raise ValueError(f"{n} bytes announced, {len(buf) - pos} left")
    return bytes(buf[pos:pos + n]), pos + n


def _decode_string(buf, pos):
    data, pos = _decode_blob(buf, pos)
    return data.decode("utf-8"), pos


def _decode_identity(buf, pos):
    if len(buf) - pos < 32:
        raise ValueError("truncated identity")
    return bytes(buf[pos:pos + 32]), pos + 32


S = wit.ScalarType
_I64 = (_int_encoder("<q", -(2**63), 2**63 - 1), _fixed_decoder("<q"))
BOOL = _Scalar(S.BOOL, _encode_bool, _decode_bool)
U8 = _Scalar(S.U8, _int_encoder("<B", 0, 2**8 - 1), _fixed_decoder("<B"))
U16 = _Scalar(S.U16, _int_encoder("<H", 0, 2**16 - 1), _fixed_decoder("<H"))
U32 = _Scalar(S.U32, _int_encoder("<I", 0, 2**32 - 1), _fixed_decoder("<I"))
U64 = _Scalar(S.U64, _int_encoder("<Q", 0, 2**64 - 1), _fixed_decoder("<Q"))
U128 = _Scalar(S.U128, _wide_encoder(False), _wide_decoder(False))
I8 = _Scalar(S.I8, _int_encoder("<b", -(2**7), 2**7 - 1), _fixed_decoder("<b"))
I16 = _Scalar(S.I16, _int_encoder("<h", -(2**15), 2**15 - 1), _fixed_decoder("<h"))
I32 = _Scalar(S.I32, _int_encoder("<i", -(2**31), 2**31 - 1), _fixed_decoder("<i"))
I64 = _Scalar(S.I64, *_I64)
I128 = _Scalar(S.I128, _wide_encoder(True), _wide_decoder(True))
F32 = _Scalar(S.F32, _encode_f32, _decode_f32)
F64 = _Scalar(S.F64, _float_encoder("<d"), _fixed_decoder("<d"))
STRING = _Scalar(S.STRING, _encode_string, _decode_string)
BYTES = _Scalar(S.BYTES, _encode_bytes, _decode_blob)
IDENTITY = _Scalar(S.IDENTITY, _encode_identity, _decode_identity)
TIMESTAMP = _Scalar(S.TIMESTAMP, *_I64)
DURATION = _Scalar(S.DURATION, *_I64)
# When a schedule table's row runs: ``{"Time": micros}`` once at that time,
# ``{"Interval": micros}`` every so often.
SCHEDULE_AT = Enum("ScheduleAt", Time=TIMESTAMP, Interval=DURATION)


def optional(ty):
    """``None`` or a value of ``ty``."""
    if ty.optional:
        raise TypeError("optional(optional(...)) is not a type: JSON could not tell the two Nones apart")
    return _Option(ty)


def vec(ty):
    """A list of values of ``ty``."""
    return _Vec(ty)


class Column:
    """A column: its name, its type and, for columns a later version adds,
    the value existing rows get."""

    _NO_DEFAULT = object()

    def __init__(self, name, ty, default=_NO_DEFAULT):
        self.name = name
        self.ty = ty
        self.default = default

    def wit(self, space):
        default = None
        if self.default is not Column._NO_DEFAULT:
            out = bytearray()
            self.ty.encode(self.default, out, f"default of column `{self.name}`")
            default = bytes(out)
        return wit.ColumnDef(name=self.name, ty=self.ty.index(space), default=default)


class Index:
    """A secondary index over one column (``column``) or several, in order
    (``columns``); ``unique`` rejects a second row with the same key. A
    ``"btree"`` index keeps keys in order and answers prefixes and ranges;
    a ``"hash"`` index answers whole keys only."""

    _KINDS = {"btree": wit.IndexKind.BTREE, "hash": wit.IndexKind.HASH}

    def __init__(self, name, column=None, unique=False, *, columns=None, kind="btree"):
        if (column is None) == (columns is None):
            raise TypeError(f"index `{name}`: give `column` or `columns`")
        if kind not in Index._KINDS:
            raise TypeError(f"index `{name}`: kind is \"btree\" or \"hash\"")
        self.name = name
        self.columns = [column] if columns is None else list(columns)
        self.unique = unique
        self.kind = kind


_MISSING = object()


class Table:
    """A table of the module, and the operations reducers use on it."""

    def __init__(
        self,
        name,
        columns,
        primary_key,
        auto_inc=None,
        indexes=(),
        ephemeral=False,
        public=False,
        scheduled=None,
    ):
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
        # Private unless declared public: clients cannot read it.
        self.public = public
        # A schedule table names the reducer each row runs when due; that
        # reducer takes the row (annotated with ``table.row``).
        self.scheduled = scheduled
        self.row = Struct(
            "".join(p.capitalize() for p in name.split("_")),
            **{c.name: c.ty for c in self.columns},
        )
        self.id = None

    def wit(self, space):
        return wit.TableDef(
            name=self.name,
            columns=[c.wit(space) for c in self.columns],
            primary_key=self.primary_key,
            auto_inc=self.auto_inc,
            indexes=[
                wit.IndexDef(
                    name=i.name,
                    columns=[self._pos[c] for c in i.columns],
                    unique=i.unique,
                    kind=Index._KINDS[i.kind],
                )
                for i in self.indexes
            ],
            ephemeral=self.ephemeral,
            public=self.public,
            scheduled=self.scheduled,
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

    def _key(self, columns, value):
        """The encoded key (or key prefix) ``value`` of an index over
        ``columns``: the value itself for one column, a tuple of the first
        one or more columns' values for several."""
        out = bytearray()
        if len(columns) == 1:
            values = [value]
        elif type(value) is tuple and 1 <= len(value) <= len(columns):
            values = value
        else:
            values = [value]
        for column, v in zip(columns, values):
            name = self.columns[column].name
            self.columns[column].ty.encode(v, out, f"key of `{self.name}.{name}`")
        return bytes(out)

    def _index_id(self, name):
        if name is None:
            return 0, [self.primary_key]
        for i, index in enumerate(self.indexes):
            if index.name == name:
                return i + 1, [self._pos[c] for c in index.columns]
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
        return _host(host.delete, self.id, self._key([self.primary_key], key))

    def find(self, key):
        """The row with this primary key, or None."""
        data = _host(host.get, self.id, self._key([self.primary_key], key))
        return None if data is None else self.decode(data)

    def find_by(self, index, key):
        """The row whose unique index ``index`` holds ``key`` (a tuple of
        values for an index over several columns), or None."""
        index_id, columns = self._index_id(index)
        data = _host(host.lookup_unique, self.id, index_id, self._key(columns, key))
        return None if data is None else self.decode(data)

    def delete_by(self, index, key):
        """Deletes the row whose unique index ``index`` holds ``key``; False
        if there was none."""
        row = self.find_by(index, key)
        return row is not None and self.delete(row[self.columns[self.primary_key].name])

    def filter(self, index, key):
        """Rows whose key in ``index`` is ``key``, or for an index over
        several columns begins with it (a tuple of the first values), in
        index order; a hash index takes whole keys only."""
        return self.scan(index, low=key, high=key, high_inclusive=True)

    def scan(self, index=None, low=None, high=None, high_inclusive=False):
        """Rows in index order (the primary key's when ``index`` is None)
        from ``low`` (included) to ``high`` (excluded, unless
        ``high_inclusive``); None leaves a side unbounded. For an index over
        several columns a bound may be a tuple of the first values (a
        prefix): ``high=(game,)`` with ``high_inclusive`` ends after the last
        key beginning with ``game``."""
        index_id, columns = self._index_id(index)
        if low is None:
            lower = wit.Bound_Unbounded()
        else:
            lower = wit.Bound_Included(self._key(columns, low))
        if high is None:
            upper = wit.Bound_Unbounded()
        elif high_inclusive:
            upper = wit.Bound_Included(self._key(columns, high))
        else:
            upper = wit.Bound_Excluded(self._key(columns, high))
        return self._rows(index_id, lower, upper)

    def _rows(self, index_id, lower, upper):
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
    """What a reducer learns of its call.

    ``sender`` and ``owner`` are IDENTITY values (32 bytes): who made the
    call, as the host verified it, and the module's owner. ``token`` is
    None for the operator, else an object with ``issuer``, ``subject`` and
    ``audience``. ``connection_id`` is the session's, in lifecycle reducers.
    ``identity`` is the module's own (32 bytes): the sender when the host
    runs a scheduled reducer.
    """

    __slots__ = (
        "tx_id",
        "timestamp",
        "timestamp_micros",
        "sender",
        "token",
        "connection_id",
        "owner",
        "identity",
        "seed",
    )

    def __init__(self, ctx):
        self.tx_id = ctx.tx_id
        # The transaction's time, µs since the Unix epoch (a TIMESTAMP).
        self.timestamp = ctx.timestamp_micros
        self.timestamp_micros = ctx.timestamp_micros
        self.sender = bytes(ctx.sender)
        self.token = ctx.token
        self.connection_id = ctx.connection_id
        self.owner = bytes(ctx.owner)
        # The module's own identity: the sender of scheduled runs.
        self.identity = bytes(ctx.identity)
        self.seed = ctx.seed


_KINDS = {
    "normal": wit.ReducerKind.NORMAL,
    "init": wit.ReducerKind.INIT,
    "migrate": wit.ReducerKind.MIGRATE,
    "client_connected": wit.ReducerKind.CLIENT_CONNECTED,
    "client_disconnected": wit.ReducerKind.CLIENT_DISCONNECTED,
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

    def wit(self, space):
        return wit.ReducerDef(
            name=self.name,
            params=[wit.ParamDef(name=n, ty=t.index(space)) for n, t in self.params],
            kind=_KINDS[self.kind],
        )

    def decode_args(self, data):
        args = []
        pos = 0
        for name, ty in self.params:
            try:
                value, pos = ty.decode(data, pos)
            except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
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
        each publication of a new version; ``"client_connected"`` and
        ``"client_disconnected"``: when a session opens and ends)."""
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
                space = _Typespace()
                tables = [t.wit(space) for t in module.tables]
                reducers = [r.wit(space) for r in module.reducers]
                return wit.ModuleDef(
                    abi_version=ABI_VERSION,
                    typespace=space.types,
                    tables=tables,
                    reducers=reducers,
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

