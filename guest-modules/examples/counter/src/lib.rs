//! The smallest useful module: named counters.

#[interstice_sdk::module]
mod counter {
    use interstice_sdk::prelude::*;

    #[table(name = counters, public)]
    pub struct Counter {
        #[primary_key]
        pub name: String,
        pub value: u64,
    }

    /// Adds one to the counter `name`, creating it at 1.
    #[reducer]
    pub fn increment(ctx: &ReducerContext, name: String) -> Result<(), String> {
        match ctx.db.counters().find(&name) {
            Some(mut counter) => {
                counter.value += 1;
                ctx.db.counters().update(counter)?;
            }
            None => {
                ctx.db.counters().insert(Counter { name, value: 1 })?;
            }
        }
        Ok(())
    }
}
