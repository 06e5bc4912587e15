//! Reducers that isolate one cost each, for the benchmarks: the guest entry
//! alone, one host import, one single-row insert.

#[interstice_sdk::module]
mod bench_guest {
    use interstice_sdk::prelude::*;

    #[table(name = rows)]
    pub struct Row {
        #[primary_key]
        pub id: u64,
        pub value: u64,
    }

    /// Does nothing: the cost of entering the guest and committing an empty
    /// transaction.
    #[reducer]
    pub fn noop(_ctx: &ReducerContext) {}

    /// One host import that finds nothing and changes nothing.
    #[reducer]
    pub fn get_missing(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        match ctx.db.rows().find(&id) {
            None => Ok(()),
            Some(_) => Err(format!("row {id} exists")),
        }
    }

    /// Inserts one row.
    #[reducer]
    pub fn insert(ctx: &ReducerContext, id: u64, value: u64) -> Result<(), String> {
        ctx.db.rows().insert(Row { id, value })?;
        Ok(())
    }
}
