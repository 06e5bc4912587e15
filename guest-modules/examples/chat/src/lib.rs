//! Users and channel messages: auto-increment ids, a unique column and a
//! B-tree index.

#[interstice_sdk::module]
mod chat {
    use interstice_sdk::prelude::*;

    #[table(name = users, public)]
    pub struct User {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        #[unique]
        pub name: String,
        pub bio: Option<String>,
        /// Logical time of registration, in microseconds.
        pub joined_micros: i64,
    }

    #[table(name = messages, public)]
    pub struct Message {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        #[index(btree)]
        pub channel: String,
        pub sender: u64,
        pub text: String,
        pub sent_micros: i64,
    }

    /// Users currently typing: never logged, empty after every restart.
    #[table(name = typing, ephemeral, public)]
    pub struct Typing {
        #[primary_key]
        pub user: u64,
        pub channel: String,
    }

    const MESSAGE_LEN_MAX: usize = 4096;

    fn user_named(ctx: &ReducerContext, name: &str) -> Result<User, String> {
        ctx.db
            .users()
            .by_name()
            .find(&name.to_string())
            .ok_or_else(|| format!("no user named {name:?}"))
    }

    /// Runs once, at first publication: the system user posts a welcome.
    #[reducer(init)]
    pub fn init(ctx: &ReducerContext) -> Result<(), String> {
        register(ctx, "system".into(), None)?;
        send(ctx, "system".into(), "general".into(), "welcome".into())
    }

    #[reducer]
    pub fn register(ctx: &ReducerContext, name: String, bio: Option<String>) -> Result<(), String> {
        if name.is_empty() {
            return Err("a user name must not be empty".into());
        }
        ctx.db
            .users()
            .insert(User {
                id: 0,
                name: name.clone(),
                bio,
                joined_micros: ctx.timestamp_micros,
            })
            .map_err(|_| format!("user name {name:?} is taken"))?;
        Ok(())
    }

    #[reducer]
    pub fn send(
        ctx: &ReducerContext,
        sender: String,
        channel: String,
        text: String,
    ) -> Result<(), String> {
        if text.len() > MESSAGE_LEN_MAX {
            return Err(format!("a message holds at most {MESSAGE_LEN_MAX} bytes"));
        }
        let user = user_named(ctx, &sender)?;
        ctx.db.typing().delete(&user.id);
        ctx.db.messages().insert(Message {
            id: 0,
            channel,
            sender: user.id,
            text,
            sent_micros: ctx.timestamp_micros,
        })?;
        Ok(())
    }

    #[reducer]
    pub fn start_typing(
        ctx: &ReducerContext,
        sender: String,
        channel: String,
    ) -> Result<(), String> {
        let user = user_named(ctx, &sender)?;
        ctx.db.typing().delete(&user.id);
        ctx.db.typing().insert(Typing {
            user: user.id,
            channel,
        })?;
        Ok(())
    }

    /// Deletes every message of `channel`.
    #[reducer]
    pub fn clear_channel(ctx: &ReducerContext, channel: String) -> Result<(), String> {
        let ids: Vec<u64> = ctx
            .db
            .messages()
            .by_channel()
            .filter(&channel)
            .map(|m| m.id)
            .collect();
        for id in ids {
            ctx.db.messages().delete(&id);
        }
        log(
            interstice_sdk::LogLevel::Info,
            &format!("cleared channel {channel}"),
        );
        Ok(())
    }

    #[reducer]
    pub fn rename(ctx: &ReducerContext, old: String, new: String) -> Result<(), String> {
        let mut user = user_named(ctx, &old)?;
        user.name = new;
        ctx.db.users().update(user)?;
        Ok(())
    }
}
