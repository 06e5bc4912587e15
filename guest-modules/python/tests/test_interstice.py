"""Tests of the Python SDK in a plain CPython, against the contract's real
bindings (`componentize-py bindings`): the row encoding byte for byte
against docs/row-encoding.md, and the definitions a module describes.
Run by tests/tests/python_sdk.rs; the reducers themselves run in real
components in the other tests."""

import math
import struct
import unittest

import interstice as ix
from wit_world.imports import types as wit


def golden_table():
    return ix.Table(
        "golden",
        [
            ix.Column("b", ix.BOOL),
            ix.Column("i", ix.I32),
            ix.Column("u", ix.U64),
            ix.Column("f", ix.F64),
            ix.Column("s", ix.STRING),
            ix.Column("y", ix.BYTES),
            ix.Column("n", ix.optional(ix.I64)),
            ix.Column("o", ix.optional(ix.U32)),
        ],
        primary_key="u",
    )


# docs/row-encoding.md, "Example".
GOLDEN_ROW = {
    "b": True,
    "i": -2,
    "u": 0x0102030405060708,
    "f": 1.5,
    "s": "hé",
    "y": b"\xab",
    "n": None,
    "o": 7,
}
GOLDEN_BYTES = bytes.fromhex(
    "01"
    "FEFFFFFF"
    "0807060504030201"
    "000000000000F83F"
    "0300000068C3A9"
    "01000000AB"
    "00"
    "0107000000"
)


class RowEncoding(unittest.TestCase):
    def test_golden_row(self):
        table = golden_table()
        self.assertEqual(table.encode(GOLDEN_ROW), GOLDEN_BYTES)
        self.assertEqual(table.decode(GOLDEN_BYTES), GOLDEN_ROW)

    def test_every_scalar_round_trips_at_its_bounds(self):
        cases = [
            (ix.BOOL, [False, True]),
            (ix.I32, [-(2**31), -1, 0, 2**31 - 1]),
            (ix.I64, [-(2**63), 0, 2**63 - 1]),
            (ix.U32, [0, 2**32 - 1]),
            (ix.U64, [0, 2**64 - 1]),
            (ix.F64, [0.0, -0.0, 1e308, -math.inf, math.inf]),
            (ix.STRING, ["", "a", "ünïcödé ✓", "x" * 70_000]),
            (ix.BYTES, [b"", b"\x00\xff", bytes(range(256))]),
            (ix.U8, [0, 255]),
            (ix.U16, [0, 65535]),
            (ix.U128, [0, 2**128 - 1]),
            (ix.I8, [-128, 127]),
            (ix.I16, [-32768, 32767]),
            (ix.I128, [-(2**127), -1, 2**127 - 1]),
            (ix.F32, [0.0, -0.0, 1.5, -math.inf, 3.4028234663852886e38]),
            (ix.IDENTITY, [bytes(32), bytes(range(32))]),
            (ix.TIMESTAMP, [-(2**63), 0, 1_760_000_000_000_000]),
            (ix.DURATION, [-1500, 2**63 - 1]),
        ]
        for ty, values in cases:
            for t in (ty, ix.optional(ty)):
                table = ix.Table("t", [ix.Column("v", t)], primary_key="v")
                for value in values + ([None] if t.optional else []):
                    data = table.encode({"v": value})
                    self.assertEqual(table.decode(data), {"v": value}, (t, value))

    def test_nan_keeps_its_bits(self):
        table = ix.Table("t", [ix.Column("v", ix.F64)], primary_key="v")
        data = table.encode({"v": math.nan})
        self.assertEqual(data, struct.pack("<d", math.nan))
        self.assertTrue(math.isnan(table.decode(data)["v"]))
        # NaNs with other payloads and signs, as docs/row-encoding.md
        # promises: decoded and encoded again, the same bits.
        for bits in (0x7FF8_0000_0000_0001, 0xFFF8_0000_0000_0000, 0x7FF4_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF):
            raw = struct.pack("<Q", bits)
            value = table.decode(raw)["v"]
            self.assertTrue(math.isnan(value), hex(bits))
            self.assertEqual(table.encode({"v": value}), raw, hex(bits))
        f32 = ix.Table("t", [ix.Column("v", ix.F32)], primary_key="v")
        for bits in (0x7FC0_0001, 0xFFC0_0000, 0x7FA0_0000):
            raw = struct.pack("<I", bits)
            value = f32.decode(raw)["v"]
            self.assertTrue(math.isnan(value), hex(bits))
            self.assertEqual(f32.encode({"v": value}), raw, hex(bits))

    def test_values_out_of_range_or_of_the_wrong_type_are_refused(self):
        bad = [
            (ix.I32, 2**31),
            (ix.I32, -(2**31) - 1),
            (ix.U32, -1),
            (ix.U64, 2**64),
            (ix.I64, 1.0),
            (ix.U64, True),
            (ix.BOOL, 1),
            (ix.STRING, b"bytes"),
            (ix.BYTES, "text"),
            (ix.F64, "1.5"),
            (ix.U64, None),
            (ix.U8, 256),
            (ix.I8, -129),
            (ix.U128, 2**128),
            (ix.I128, -(2**127) - 1),
            (ix.F32, 1e39),
            (ix.IDENTITY, bytes(31)),
            (ix.TIMESTAMP, 2**63),
            (ix.vec(ix.U8), b"\x01"),
            (POS, {"x": 1.0}),
            (POS, {"x": 1.0, "y": 2.0, "z": 3.0}),
            (KIND, "Sward"),
            (KIND, {"Sword": None}),
            (KIND, "Bow"),
            (KIND, {"Pair": [1]}),
            (KIND, {"Staff": {"power": 70000}}),
        ]
        for ty, value in bad:
            table = ix.Table("t", [ix.Column("v", ty)], primary_key="v")
            with self.assertRaises(ix.ReducerError, msg=(ty, value)):
                table.encode({"v": value})

    def test_missing_columns(self):
        table = ix.Table(
            "t",
            [ix.Column("id", ix.U64), ix.Column("note", ix.optional(ix.STRING)), ix.Column("n", ix.U32)],
            primary_key="id",
            auto_inc="id",
        )
        self.assertEqual(table.encode({"n": 3}), bytes(8) + b"\x00" + struct.pack("<I", 3))
        with self.assertRaises(ix.ReducerError):
            table.encode({"id": 1})


POS = ix.Struct("Pos", x=ix.F32, y=ix.F32)
KIND = ix.Enum("Kind", Sword=None, Bow=ix.U8, Pair=(ix.U8, ix.U16), Staff={"power": ix.U16, "name": ix.STRING})


class AlgebraicTypes(unittest.TestCase):
    def encode(self, ty, value):
        table = ix.Table("t", [ix.Column("v", ty)], primary_key="v")
        data = table.encode({"v": value})
        self.assertEqual(table.decode(data), {"v": value}, (ty, value))
        return data

    def test_golden_bytes_of_every_kind_of_type(self):
        # docs/row-encoding.md, "Values".
        cases = [
            (ix.U128, 1, "01" + "00" * 15),
            (ix.I128, -2, "FE" + "FF" * 15),
            (ix.I8, -1, "FF"),
            (ix.U16, 0x0102, "0201"),
            (ix.F32, 1.5, "0000C03F"),
            (ix.TIMESTAMP, -1, "FF" * 8),
            (ix.IDENTITY, bytes(range(32)), bytes(range(32)).hex()),
            (POS, {"x": 1.5, "y": -math.inf}, "0000C03F" "000080FF"),
            (KIND, "Sword", "00"),
            (KIND, {"Bow": 3}, "0103"),
            (KIND, {"Pair": [1, 2]}, "02" "01" "0200"),
            (KIND, {"Staff": {"power": 9, "name": "oak"}}, "03" "0900" "03000000" "6F616B"),
            (ix.vec(ix.optional(ix.I32)), [1, None, -3], "03000000" "0101000000" "00" "01FDFFFFFF"),
            (ix.optional(ix.vec(ix.STRING)), ["a"], "01" "01000000" "0100000061"),
            (ix.vec(ix.U8), [], "00000000"),
        ]
        for ty, value, golden in cases:
            self.assertEqual(self.encode(ty, value), bytes.fromhex(golden), (ty, value))

    def test_invalid_bytes_are_refused(self):
        table = ix.Table("t", [ix.Column("v", KIND)], primary_key="v")
        for data in [b"\x04", b"\x01", b"\x03\x09\x00\xff\xff\xff\x7f"]:
            with self.assertRaises((ValueError, IndexError, struct.error), msg=data):
                table.decode(data)
        vec_table = ix.Table("t", [ix.Column("v", ix.vec(ix.U64))], primary_key="v")
        with self.assertRaises(ValueError):
            vec_table.decode(b"\xff\xff\xff\xff")

    def test_refusals_name_the_path(self):
        item = ix.Struct("Item", kind=KIND, tags=ix.vec(ix.STRING))
        table = ix.Table("t", [ix.Column("id", ix.U64), ix.Column("items", ix.vec(item))], primary_key="id")
        cases = [
            ([{"kind": "Sword", "tags": []}, {"kind": "Sward", "tags": []}], "column `t.items`[1].kind: unknown variant 'Sward'"),
            ([{"kind": {"Staff": {"power": 1}}, "tags": []}], "column `t.items`[0].kind.Staff.name: missing"),
            ([{"kind": "Sword", "tags": ["a", 1]}], "column `t.items`[0].tags[1]: 1 is not a str"),
        ]
        for items, message in cases:
            with self.assertRaises(ix.ReducerError) as raised:
                table.encode({"id": 1, "items": items})
            self.assertEqual(str(raised.exception), message)

    def test_composite_keys_and_prefixes(self):
        table = ix.Table(
            "moves",
            [ix.Column("id", ix.U64), ix.Column("game", ix.U32), ix.Column("turn", ix.U16)],
            primary_key="id",
            indexes=[ix.Index("by_game_turn", columns=["game", "turn"]), ix.Index("turn", "turn", kind="hash")],
        )
        index_id, columns = table._index_id("by_game_turn")
        self.assertEqual((index_id, columns), (1, [1, 2]))
        self.assertEqual(table._key(columns, (7, 3)), bytes.fromhex("07000000" "0300"))
        self.assertEqual(table._key(columns, (7,)), bytes.fromhex("07000000"))
        self.assertEqual(table._key(columns, 7), bytes.fromhex("07000000"))
        with self.assertRaises(ix.ReducerError):
            table._key(columns, (7, 70000))
        d = table.wit(ix._Typespace())
        self.assertEqual(
            d.indexes,
            [
                wit.IndexDef(name="by_game_turn", columns=[1, 2], unique=False, kind=wit.IndexKind.BTREE),
                wit.IndexDef(name="turn", columns=[2], unique=False, kind=wit.IndexKind.HASH),
            ],
        )
        with self.assertRaises(TypeError):
            ix.Index("bad", "turn", columns=["turn"])
        with self.assertRaises(TypeError):
            ix.Index("bad", "turn", kind="trie")


class Definitions(unittest.TestCase):
    def test_a_module_describes_its_tables_and_reducers(self):
        table = ix.Table(
            "users",
            [
                ix.Column("id", ix.U64),
                ix.Column("name", ix.STRING),
                ix.Column("karma", ix.I64, default=10),
            ],
            primary_key="id",
            auto_inc="id",
            indexes=[ix.Index("by_name", "name", unique=True)],
        )
        module = ix.Module(tables=[table])

        @module.reducer(kind="init")
        def init(ctx):
            pass

        @module.reducer
        def give(ctx, from_: ix.U64, to: ix.U64, note: ix.optional(ix.STRING)):
            pass

        world = module.world()()
        d = world.describe()
        self.assertEqual(d.abi_version, 2)
        (t,) = d.tables
        self.assertEqual((t.name, t.primary_key, t.auto_inc, t.ephemeral), ("users", 0, 0, False))
        self.assertEqual([c.name for c in t.columns], ["id", "name", "karma"])
        ts = d.typespace
        self.assertEqual(ts[t.columns[1].ty], wit.TypeDef_Scalar(wit.ScalarType.STRING))
        self.assertEqual(t.columns[2].default, struct.pack("<q", 10))
        self.assertIsNone(t.columns[0].default)
        self.assertEqual(t.indexes, [wit.IndexDef(name="by_name", columns=[1], unique=True, kind=wit.IndexKind.BTREE)])
        self.assertEqual([(r.name, r.kind) for r in d.reducers], [("init", wit.ReducerKind.INIT), ("give", wit.ReducerKind.NORMAL)])
        self.assertEqual([p.name for p in d.reducers[1].params], ["from", "to", "note"])
        note = ts[d.reducers[1].params[2].ty]
        self.assertEqual(note, wit.TypeDef_Option(t.columns[1].ty))
        # Each type once: the two u64 parameters and the u64 column share it.
        self.assertEqual(d.reducers[1].params[0].ty, t.columns[0].ty)
        self.assertEqual(d.reducers[1].params[1].ty, t.columns[0].ty)
        self.assertEqual(table.id, 0)

    def test_structs_and_enums_describe_themselves_once(self):
        item = ix.Struct("Item", kind=KIND, at=POS)
        module = ix.Module(tables=[ix.Table("t", [ix.Column("id", ix.U64), ix.Column("items", ix.vec(item))], primary_key="id")])

        @module.reducer
        def r(ctx, kind: KIND, pos: POS):
            pass

        d = module.world()().describe()
        ts = d.typespace
        items = ts[d.tables[0].columns[1].ty]
        self.assertIsInstance(items, wit.TypeDef_Vec)
        product = ts[items.value].value
        self.assertEqual(product.name, "Item")
        self.assertEqual([f.name for f in product.fields], ["kind", "at"])
        kind = product.fields[0].ty
        self.assertEqual(d.reducers[0].params[0].ty, kind)
        self.assertEqual(d.reducers[0].params[1].ty, product.fields[1].ty)
        variants = ts[kind].value.variants
        self.assertEqual(
            [(v.name, v.shape, [f.name for f in v.fields]) for v in variants],
            [
                ("Sword", wit.VariantShape.UNIT, []),
                ("Bow", wit.VariantShape.TUPLE, ["0"]),
                ("Pair", wit.VariantShape.TUPLE, ["0", "1"]),
                ("Staff", wit.VariantShape.STRUCT, ["power", "name"]),
            ],
        )
        self.assertEqual(ts[variants[3].fields[1].ty], wit.TypeDef_Scalar(wit.ScalarType.STRING))

    def test_arguments_decode_and_bad_ones_are_refused(self):
        module = ix.Module(tables=[])
        seen = []

        @module.reducer
        def r(ctx, a: ix.U32, b: ix.optional(ix.STRING)):
            seen.append((ctx.tx_id, a, b, ctx.sender, ctx.owner, ctx.identity))

        world = module.world()()
        ctx = wit.ReducerContext(
            tx_id=7,
            timestamp_micros=1,
            sender=b"\x01" * 32,
            token=None,
            connection_id=None,
            owner=b"\x02" * 32,
            seed=2,
            identity=b"\x03" * 32,
        )
        world.call_reducer(ctx, 0, struct.pack("<I", 5) + b"\x01\x02\x00\x00\x00hi")
        self.assertEqual(seen, [(7, 5, "hi", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)])
        from componentize_py_types import Err

        for args in [b"", struct.pack("<I", 5) + b"\x00trailing", struct.pack("<I", 5) + b"\x01\xff"]:
            with self.assertRaises(Err):
                world.call_reducer(ctx, 0, args)
        with self.assertRaises(Err):
            world.call_reducer(ctx, 1, b"")

    def test_an_unexpected_exception_fails_the_call_with_its_traceback_logged(self):
        import contextlib
        import io

        from componentize_py_types import Err

        module = ix.Module(tables=[])

        @module.reducer
        def lookup(ctx):
            return {}["missing"]

        world = module.world()()
        ctx = wit.ReducerContext(
            tx_id=1,
            timestamp_micros=1,
            sender=b"\x01" * 32,
            token=None,
            connection_id=None,
            owner=b"\x02" * 32,
            seed=0,
            identity=b"\x03" * 32,
        )
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(Err) as raised:
            world.call_reducer(ctx, 0, b"")
        self.assertEqual(raised.exception.value, "reducer `lookup` raised KeyError: 'missing'")
        self.assertIn("Traceback", stderr.getvalue())
        self.assertIn("KeyError: 'missing'", stderr.getvalue())

    def test_declarations_that_cannot_work_are_refused(self):
        module = ix.Module(tables=[])
        with self.assertRaises(TypeError):

            @module.reducer
            def untyped(ctx, a):
                pass

        with self.assertRaises(TypeError):
            ix.optional(ix.optional(ix.U64))
        with self.assertRaises(TypeError):
            ix.Struct("Empty")
        with self.assertRaises(TypeError):
            ix.Enum("Bad", A="not a type")
        with self.assertRaises(TypeError):
            ix.Table("t", [ix.Column("a", ix.U64), ix.Column("a", ix.U64)], primary_key="a")


if __name__ == "__main__":
    unittest.main()
