//! The chat of the web app (`clients/web-chat`): people are identities,
//! each with a name they pick; a message carries its sender's identity,
//! never a name the client claims.

#[interstice_sdk::module]
mod chatroom {
    use interstice_sdk::prelude::*;

    #[table(name = person, public)]
    pub struct Person {
        #[primary_key]
        pub identity: Identity,
        #[unique]
        pub name: String,
        /// Whether a session of this identity is open.
        pub online: bool,
    }

    #[table(name = message, public)]
    pub struct Message {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub sender: Identity,
        pub text: String,
        /// Logical time of sending, in microseconds since the epoch.
        pub sent_micros: i64,
    }

    const NAME_MAX: usize = 32;
    const TEXT_MAX: usize = 2000;

    /// Picks (or changes) the caller's name; names are unique.
    #[reducer]
    pub fn set_name(ctx: &ReducerContext, name: String) -> Result<(), String> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > NAME_MAX {
            return Err(format!("a name has 1 to {NAME_MAX} characters"));
        }
        let people = ctx.db.person();
        if let Some(other) = people.by_name().find(&name)
            && other.identity != ctx.sender
        {
            return Err(format!("the name {name:?} is taken"));
        }
        match people.find(&ctx.sender) {
            Some(mut me) => {
                me.name = name;
                people.update(me)?;
            }
            None => {
                people.insert(Person {
                    identity: ctx.sender,
                    name,
                    online: true,
                })?;
            }
        }
        Ok(())
    }

    /// Posts a message as the caller, who must have a name.
    #[reducer]
    pub fn send(ctx: &ReducerContext, text: String) -> Result<(), String> {
        if ctx.db.person().find(&ctx.sender).is_none() {
            return Err("pick a name first".into());
        }
        let text = text.trim();
        if text.is_empty() || text.chars().count() > TEXT_MAX {
            return Err(format!("a message has 1 to {TEXT_MAX} characters"));
        }
        ctx.db.message().insert(Message {
            id: 0,
            sender: ctx.sender,
            text: text.to_string(),
            sent_micros: ctx.timestamp_micros,
        })?;
        Ok(())
    }

    #[reducer(client_connected)]
    pub fn connected(ctx: &ReducerContext) -> Result<(), String> {
        set_online(ctx, true)
    }

    #[reducer(client_disconnected)]
    pub fn disconnected(ctx: &ReducerContext) -> Result<(), String> {
        set_online(ctx, false)
    }

    fn set_online(ctx: &ReducerContext, online: bool) -> Result<(), String> {
        let people = ctx.db.person();
        if let Some(mut me) = people.find(&ctx.sender)
            && me.online != online
        {
            me.online = online;
            people.update(me)?;
        }
        Ok(())
    }
}
