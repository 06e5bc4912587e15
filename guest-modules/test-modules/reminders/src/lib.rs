//! A test module for scheduled reducers: one-shot and repeating reminders
//! that each record a row when they run, and a gate that makes a reminder's
//! reducer fail while it is closed.

#[interstice_sdk::module]
mod reminders {
    use interstice_sdk::prelude::*;

    /// The schedule: each row runs `remind` when it is due.
    #[table(name = reminders, public, scheduled(remind))]
    pub struct Reminder {
        #[primary_key]
        #[auto_inc]
        pub scheduled_id: u64,
        pub scheduled_at: ScheduleAt,
        pub text: String,
    }

    /// One row per run of a reminder.
    #[table(name = fired, public)]
    pub struct Fired {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub reminder: u64,
        pub text: String,
        pub at: Timestamp,
        pub sender: Identity,
    }

    /// Texts whose reminders fail while they are here.
    #[table(name = gates, public)]
    pub struct Gate {
        #[primary_key]
        pub text: String,
    }

    /// Runs when a reminder is due; only the scheduler may run it.
    #[reducer]
    pub fn remind(ctx: &ReducerContext, row: Reminder) -> Result<(), String> {
        if ctx.sender != ctx.identity() {
            return Err("reminders run only when they are due".into());
        }
        if ctx.db.gates().find(&row.text).is_some() {
            return Err(format!("the gate of `{}` is closed", row.text));
        }
        ctx.db.fired().insert(Fired {
            id: 0,
            reminder: row.scheduled_id,
            text: row.text,
            at: ctx.timestamp,
            sender: ctx.sender,
        })?;
        Ok(())
    }

    /// A reminder that runs once, at `at` (µs since the Unix epoch).
    #[reducer]
    pub fn remind_at(ctx: &ReducerContext, text: String, at: Timestamp) -> Result<(), String> {
        ctx.db.reminders().insert(Reminder {
            scheduled_id: 0,
            scheduled_at: ScheduleAt::Time(at),
            text,
        })?;
        Ok(())
    }

    /// A reminder that runs every `every`, first one interval from now.
    #[reducer]
    pub fn remind_every(ctx: &ReducerContext, text: String, every: Duration) -> Result<(), String> {
        ctx.db.reminders().insert(Reminder {
            scheduled_id: 0,
            scheduled_at: ScheduleAt::Interval(every),
            text,
        })?;
        Ok(())
    }

    /// `count` one-shot reminders, due `after` from now, `spread` apart.
    #[reducer]
    pub fn remind_many(
        ctx: &ReducerContext,
        text: String,
        count: u32,
        after: Duration,
        spread: Duration,
    ) -> Result<(), String> {
        for i in 0..count {
            let at = ctx.timestamp + after + Duration::from_micros(spread.micros() * i as i64);
            ctx.db.reminders().insert(Reminder {
                scheduled_id: 0,
                scheduled_at: ScheduleAt::Time(at),
                text: format!("{text} {i}"),
            })?;
        }
        Ok(())
    }

    /// Cancels a reminder.
    #[reducer]
    pub fn cancel(ctx: &ReducerContext, id: u64) -> Result<(), String> {
        if !ctx.db.reminders().delete(&id) {
            return Err(format!("no reminder {id}"));
        }
        Ok(())
    }

    #[reducer]
    pub fn close_gate(ctx: &ReducerContext, text: String) -> Result<(), String> {
        ctx.db.gates().insert(Gate { text })?;
        Ok(())
    }

    #[reducer]
    pub fn open_gate(ctx: &ReducerContext, text: String) {
        ctx.db.gates().delete(&text);
    }
}
