//! A module that misbehaves on request, for the host's tests: every reducer
//! first writes, then fails in its own way, so the tests can check that the
//! write was rolled back and that the next call works.

#[interstice_sdk::module]
mod misbehave {
    use interstice_sdk::prelude::*;

    #[table(name = items)]
    pub struct Item {
        #[primary_key]
        pub id: u64,
        #[unique]
        pub tag: String,
        #[index(btree)]
        pub group: u32,
        pub note: Option<String>,
    }

    /// Results of reads, written where the test can see them.
    #[table(name = results)]
    pub struct Outcome {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub what: String,
        pub ids: Vec<u8>,
    }

    #[reducer]
    pub fn put(ctx: &ReducerContext, id: u64, tag: String, group: u32) -> Result<(), String> {
        ctx.db.items().insert(Item {
            id,
            tag,
            group,
            note: None,
        })?;
        Ok(())
    }

    #[reducer]
    pub fn retag(ctx: &ReducerContext, id: u64, tag: String) -> Result<(), String> {
        let mut item = ctx.db.items().find(&id).ok_or("no such item")?;
        item.tag = tag;
        ctx.db.items().update(item)?;
        Ok(())
    }

    #[reducer]
    pub fn remove(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        if ctx.db.items().delete(&id) {
            Ok(())
        } else {
            Err(format!("no item {id}"))
        }
    }

    /// Writes, then returns an error.
    #[reducer]
    pub fn put_then_fail(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        put(ctx, id, format!("tag{id}"), 0)?;
        ctx.db.items().delete(&1);
        Err("refused on purpose".into())
    }

    /// Writes, then panics (a trap).
    #[reducer]
    pub fn put_then_panic(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        put(ctx, id, format!("tag{id}"), 0)?;
        panic!("panicked on purpose after writing {id}");
    }

    /// Writes, then executes `unreachable`.
    #[reducer]
    pub fn put_then_unreachable(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        put(ctx, id, format!("tag{id}"), 0)?;
        core::arch::wasm32::unreachable()
    }

    /// Writes, then loops forever (until fuel runs out).
    #[reducer]
    pub fn put_then_loop(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        put(ctx, id, format!("tag{id}"), 0)?;
        let mut x = ctx.seed;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    /// Writes, then allocates memory without bound.
    #[reducer]
    pub fn put_then_bomb(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        put(ctx, id, format!("tag{id}"), 0)?;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }

    /// Hands the host bytes that are not a row of `items`.
    #[reducer]
    pub fn put_garbage(_ctx: &ReducerContext) -> Result<(), String> {
        use interstice_sdk::bindings::interstice::module::host;
        host::insert(0, &[1, 2, 3])
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    }

    /// Records the ids of a group, read through the B-tree index.
    #[reducer]
    pub fn read_group(ctx: &ReducerContext, group: u32) -> Result<(), String> {
        let ids: Vec<u8> = ctx
            .db
            .items()
            .by_group()
            .filter(&group)
            .map(|i| i.id as u8)
            .collect();
        record(ctx, format!("group {group}"), ids)
    }

    /// Records the ids in [lo, hi) read through the primary key.
    #[reducer]
    pub fn read_range(ctx: &ReducerContext, lo: u64, hi: u64) -> Result<(), String> {
        let ids: Vec<u8> = ctx.db.items().range(lo..hi).map(|i| i.id as u8).collect();
        record(ctx, format!("range {lo}..{hi}"), ids)
    }

    /// Records the id holding `tag`, found through the unique index.
    #[reducer]
    pub fn read_tag(ctx: &ReducerContext, tag: String) -> Result<(), String> {
        let ids = ctx
            .db
            .items()
            .by_tag()
            .find(&tag)
            .map(|i| vec![i.id as u8])
            .unwrap_or_default();
        record(ctx, format!("tag {tag}"), ids)
    }

    /// Deletes every item while iterating over them.
    #[reducer]
    pub fn delete_all(ctx: &ReducerContext) -> Result<(), String> {
        for item in ctx.db.items().iter() {
            ctx.db.items().delete(&item.id);
        }
        Ok(())
    }

    fn record(ctx: &ReducerContext, what: String, ids: Vec<u8>) -> Result<(), String> {
        let count = ctx.db.items().count();
        ctx.db.results().insert(Outcome {
            id: 0,
            what: format!("{what} of {count}"),
            ids,
        })?;
        Ok(())
    }
}
