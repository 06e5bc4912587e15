//! Every column type of row encoding 2, in tables and reducer parameters:
//! the host's type tests (`host/cli/tests/types.rs`) call it over the CLI and
//! HTTP and check the JSON exactly.

use interstice_sdk::prelude::*;

/// A struct declared outside the module.
#[derive(Type, Clone, Debug, PartialEq)]
pub struct Pos {
    pub x: f32,
    pub y: f32,
}

/// An enum with unit, tuple and struct variants.
#[derive(Type, Clone, Debug, PartialEq)]
pub enum Kind {
    Sword,
    Bow(u8),
    Pair(u8, u16),
    Staff { power: u16, name: String },
}

#[interstice_sdk::module]
mod types {
    use super::{Kind, Pos};
    use interstice_sdk::prelude::*;

    /// A struct declared inside the module.
    #[derive(Type, Clone, Debug, PartialEq)]
    pub struct Item {
        pub kind: Kind,
        pub count: u32,
        pub tags: Vec<String>,
    }

    /// One column of every type; also a reducer parameter type.
    #[table(name = everything)]
    #[derive(Type, Clone, Debug, PartialEq)]
    pub struct Everything {
        #[primary_key]
        pub id: u128,
        pub flag: bool,
        pub a: u8,
        pub b: u16,
        pub c: u32,
        pub d: u64,
        pub e: i8,
        pub f: i16,
        pub g: i32,
        pub h: i64,
        pub i: i128,
        pub j: f32,
        pub k: f64,
        pub text: String,
        pub raw: Vec<u8>,
        pub who: Identity,
        pub at: Timestamp,
        pub took: Duration,
        pub pos: Pos,
        pub kind: Kind,
        pub inventory: Vec<Item>,
        pub maybe: Option<Vec<Option<i32>>>,
    }

    /// Stores `row`, replacing the row with its id.
    #[reducer]
    pub fn put(ctx: &ReducerContext, row: Everything) -> Result<(), String> {
        let table = ctx.db.everything();
        if table.find(&row.id).is_some() {
            table.update(row)?;
        } else {
            table.insert(row)?;
        }
        Ok(())
    }

    /// Moves row `id` to `pos` with `kind`, stamped with the transaction's
    /// time, and records how long it took since `since`.
    #[reducer]
    pub fn move_to(
        ctx: &ReducerContext,
        id: u128,
        pos: Pos,
        kind: Kind,
        since: Timestamp,
        who: Identity,
    ) -> Result<(), String> {
        let table = ctx.db.everything();
        let mut row = table.find(&id).ok_or_else(|| format!("no row {id}"))?;
        row.pos = pos;
        row.kind = kind;
        row.at = ctx.timestamp + Duration::from_millis(1);
        row.took = ctx.timestamp - since;
        row.who = who;
        table.update(row)?;
        Ok(())
    }
}
