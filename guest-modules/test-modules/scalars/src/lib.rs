//! Every column type of row encoding 1, in a table with a unique and a
//! B-tree index. The data directory in `tests/fixtures/v1-data` was written
//! by this module as built with the SDK of row encoding 1; the fixture test
//! opens it with today's host and republishes this module on it.

#[interstice_sdk::module]
mod scalars {
    use interstice_sdk::prelude::*;

    #[table(name = samples)]
    pub struct Sample {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        #[unique]
        pub label: String,
        #[index(btree)]
        pub group: i32,
        pub flag: bool,
        pub small: u32,
        pub wide: i64,
        pub ratio: f64,
        pub blob: Vec<u8>,
        pub note: Option<String>,
        pub maybe: Option<u32>,
    }

    /// Stores one sample; `id` 0 takes the next auto-increment value.
    #[reducer]
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        ctx: &ReducerContext,
        label: String,
        group: i32,
        flag: bool,
        small: u32,
        wide: i64,
        ratio: f64,
        blob: Vec<u8>,
        note: Option<String>,
        maybe: Option<u32>,
    ) -> Result<(), String> {
        ctx.db
            .samples()
            .insert(Sample {
                id: 0,
                label,
                group,
                flag,
                small,
                wide,
                ratio,
                blob,
                note,
                maybe,
            })
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    /// Removes the sample labelled `label`.
    #[reducer]
    pub fn remove(ctx: &ReducerContext, label: String) -> Result<(), String> {
        let sample = ctx
            .db
            .samples()
            .by_label()
            .find(&label)
            .ok_or_else(|| format!("no sample labelled {label:?}"))?;
        ctx.db.samples().delete(&sample.id);
        Ok(())
    }
}
