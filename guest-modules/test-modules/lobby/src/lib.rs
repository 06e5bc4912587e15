//! A test module for identities and sessions: it records who called, who
//! connected and disconnected, keeps a private and a public table, and can
//! be told to refuse the next sessions.

#[interstice_sdk::module]
mod lobby {
    use interstice_sdk::prelude::*;

    /// Who made each call, and with which token claims.
    #[table(name = calls, public)]
    pub struct Call {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub sender: Identity,
        pub issuer: Option<String>,
        pub subject: Option<String>,
        pub owner: Identity,
    }

    /// Every lifecycle event, in order.
    #[table(name = events, public)]
    pub struct Event {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub connected: bool,
        pub sender: Identity,
        pub connection_id: u64,
    }

    /// Private: clients may not read it.
    #[table(name = secrets)]
    pub struct Secret {
        #[primary_key]
        pub id: u64,
        pub text: String,
    }

    /// Whether `client_connected` refuses (row 0 present: yes).
    #[table(name = gate)]
    pub struct Gate {
        #[primary_key]
        pub id: u32,
        pub reason: String,
    }

    #[reducer]
    pub fn whoami(ctx: &ReducerContext) -> Result<(), String> {
        ctx.db.calls().insert(Call {
            id: 0,
            sender: ctx.sender,
            issuer: ctx.token.as_ref().map(|t| t.issuer.clone()),
            subject: ctx.token.as_ref().map(|t| t.subject.clone()),
            owner: ctx.owner(),
        })?;
        Ok(())
    }

    #[reducer]
    pub fn keep_secret(ctx: &ReducerContext, id: u64, text: String) -> Result<(), String> {
        ctx.db.secrets().insert(Secret { id, text })?;
        Ok(())
    }

    /// Only the owner may shut the door.
    #[reducer]
    pub fn close_door(ctx: &ReducerContext, reason: String) -> Result<(), String> {
        if ctx.sender != ctx.owner() {
            return Err(format!(
                "only the owner may close the door, not {}",
                ctx.sender
            ));
        }
        ctx.db.gate().insert(Gate { id: 0, reason })?;
        Ok(())
    }

    #[reducer]
    pub fn open_door(ctx: &ReducerContext) -> Result<(), String> {
        ctx.db.gate().delete(&0);
        Ok(())
    }

    #[reducer(client_connected)]
    pub fn hello(ctx: &ReducerContext) -> Result<(), String> {
        if let Some(gate) = ctx.db.gate().find(&0) {
            return Err(gate.reason);
        }
        ctx.db.events().insert(Event {
            id: 0,
            connected: true,
            sender: ctx.sender,
            connection_id: ctx.connection_id.ok_or("no connection id")?,
        })?;
        Ok(())
    }

    #[reducer(client_disconnected)]
    pub fn goodbye(ctx: &ReducerContext) -> Result<(), String> {
        ctx.db.events().insert(Event {
            id: 0,
            connected: false,
            sender: ctx.sender,
            connection_id: ctx.connection_id.ok_or("no connection id")?,
        })?;
        Ok(())
    }
}
