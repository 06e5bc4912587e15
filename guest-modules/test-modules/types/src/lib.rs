//! Every column type of row encoding 2, in tables and reducer parameters,
//! and every kind of index: the host's type tests
//! (`host/cli/tests/types.rs`) call it over the CLI and HTTP and check the
//! JSON exactly.

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
    #[table(name = everything, public)]
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

    /// A move of a game, indexed every way an index can be declared.
    #[table(
        name = moves,
        public,
        index(name = by_game_turn, btree(columns = [game, turn])),
        index(name = by_cell, unique, hash(columns = [game, x, y])),
        index(name = by_game_kind, hash(columns = [game, kind]))
    )]
    pub struct Move {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub game: u32,
        pub turn: u16,
        #[index(hash)]
        pub player: Identity,
        #[unique]
        #[index(hash)]
        pub tag: String,
        pub x: u8,
        pub y: u8,
        #[index(btree)]
        pub kind: Kind,
        #[unique]
        pub at: Timestamp,
    }

    /// What the last `find` saw: the ids each lookup returned, in order.
    #[table(name = found, public)]
    pub struct Found {
        #[primary_key]
        pub lookup: String,
        pub ids: Vec<u64>,
    }

    /// Records a move at the transaction's time.
    #[reducer]
    pub fn play(
        ctx: &ReducerContext,
        game: u32,
        turn: u16,
        player: Identity,
        tag: String,
        x: u8,
        y: u8,
        kind: Kind,
    ) -> Result<(), String> {
        ctx.db.moves().insert(Move {
            id: 0,
            game,
            turn,
            player,
            tag,
            x,
            y,
            kind,
            at: ctx.timestamp,
        })?;
        Ok(())
    }

    /// Runs every kind of lookup and stores what each returned in `found`.
    #[reducer]
    pub fn find(
        ctx: &ReducerContext,
        game: u32,
        from: u16,
        to: u16,
        player: Identity,
        tag: String,
        x: u8,
        y: u8,
        kind: Kind,
    ) -> Result<(), String> {
        let moves = ctx.db.moves();
        let ids = |rows: &mut dyn Iterator<Item = Move>| rows.map(|m| m.id).collect::<Vec<_>>();
        let by_game_turn = moves.by_game_turn();
        let lookups: Vec<(&str, Vec<u64>)> = vec![
            ("whole key", ids(&mut by_game_turn.filter((&game, &from)))),
            ("prefix", ids(&mut by_game_turn.filter(&game))),
            (
                "range on the last column",
                ids(&mut by_game_turn.filter((&game, from..to))),
            ),
            (
                "inclusive range",
                ids(&mut by_game_turn.filter((&game, from..=to))),
            ),
            ("open range", ids(&mut by_game_turn.filter((&game, from..)))),
            (
                "range on the first column",
                ids(&mut by_game_turn.filter(game..=game + 1)),
            ),
            ("everything", ids(&mut by_game_turn.filter(..))),
            ("player", ids(&mut moves.by_player().filter(&player))),
            (
                "tag",
                moves
                    .by_tag()
                    .find(&tag)
                    .map(|m| m.id)
                    .into_iter()
                    .collect(),
            ),
            (
                "cell",
                moves
                    .by_cell()
                    .find((&game, &x, &y))
                    .map(|m| m.id)
                    .into_iter()
                    .collect(),
            ),
            (
                "game and kind",
                ids(&mut moves.by_game_kind().filter((&game, &kind))),
            ),
            (
                "kind and after",
                ids(&mut moves.by_kind().range(kind.clone()..)),
            ),
        ];
        let found = ctx.db.found();
        for row in found.iter().collect::<Vec<_>>() {
            found.delete(&row.lookup);
        }
        for (lookup, ids) in lookups {
            found.insert(Found {
                lookup: lookup.to_string(),
                ids,
            })?;
        }
        Ok(())
    }

    /// Deletes the move with this tag through the unique hash index.
    #[reducer]
    pub fn take_back(ctx: &ReducerContext, tag: String) -> Result<(), String> {
        if ctx.db.moves().by_tag().delete(&tag) {
            Ok(())
        } else {
            Err(format!("no move tagged {tag:?}"))
        }
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
