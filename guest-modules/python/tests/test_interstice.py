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
        self.assertEqual(d.abi_version, 1)
        (t,) = d.tables
        self.assertEqual((t.name, t.primary_key, t.auto_inc, t.ephemeral), ("users", 0, 0, False))
        self.assertEqual([c.name for c in t.columns], ["id", "name", "karma"])
        self.assertEqual(t.columns[1].ty, wit.ColumnType(scalar=wit.ScalarType.STRING, optional=False))
        self.assertEqual(t.columns[2].default, struct.pack("<q", 10))
        self.assertIsNone(t.columns[0].default)
        self.assertEqual(t.indexes, [wit.IndexDef(name="by_name", column=1, unique=True)])
        self.assertEqual([(r.name, r.kind) for r in d.reducers], [("init", wit.ReducerKind.INIT), ("give", wit.ReducerKind.NORMAL)])
        self.assertEqual([p.name for p in d.reducers[1].params], ["from", "to", "note"])
        self.assertTrue(d.reducers[1].params[2].ty.optional)
        self.assertEqual(table.id, 0)

    def test_arguments_decode_and_bad_ones_are_refused(self):
        module = ix.Module(tables=[])
        seen = []

        @module.reducer
        def r(ctx, a: ix.U32, b: ix.optional(ix.STRING)):
            seen.append((ctx.tx_id, a, b))

        world = module.world()()
        ctx = wit.ReducerContext(tx_id=7, timestamp_micros=1, caller="c", seed=2)
        world.call_reducer(ctx, 0, struct.pack("<I", 5) + b"\x01\x02\x00\x00\x00hi")
        self.assertEqual(seen, [(7, 5, "hi")])
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
        ctx = wit.ReducerContext(tx_id=1, timestamp_micros=1, caller="c", seed=0)
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
            ix.Table("t", [ix.Column("a", ix.U64), ix.Column("a", ix.U64)], primary_key="a")


if __name__ == "__main__":
    unittest.main()
