//! The `bank` example's second version: additive changes only, so
//! publishing it over `bank` migrates automatically. Accounts gain two
//! columns at the end (one with a declared default, one optional), an index
//! on a new column; a new table and a new reducer appear.

#[interstice_sdk::module]
mod bank {
    use interstice_sdk::prelude::*;

    /// A new table, listed before the old one: table ids move, names hold.
    #[table(name = audit, public)]
    pub struct Audit {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub account: u64,
        pub note: String,
    }

    #[table(name = accounts, public)]
    pub struct Account {
        #[primary_key]
        pub id: u64,
        pub balance: u64,
        #[default(7)]
        #[index(btree)]
        pub branch: u32,
        pub owner: Option<String>,
    }

    #[reducer]
    pub fn open_account(ctx: &ReducerContext, id: u64, balance: u64) -> Result<(), String> {
        ctx.db
            .accounts()
            .insert(Account {
                id,
                balance,
                branch: 1,
                owner: None,
            })
            .map_err(|_| format!("account {id} already exists"))?;
        Ok(())
    }

    #[reducer]
    pub fn deposit(ctx: &ReducerContext, id: u64, amount: u64) -> Result<(), String> {
        let mut account = ctx
            .db
            .accounts()
            .find(&id)
            .ok_or_else(|| format!("account {id} does not exist"))?;
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or_else(|| format!("deposit would overflow account {id}"))?;
        ctx.db.accounts().update(account)?;
        Ok(())
    }

    #[reducer]
    pub fn transfer(ctx: &ReducerContext, from: u64, to: u64, amount: u64) -> Result<(), String> {
        let accounts = ctx.db.accounts();
        let mut source = accounts
            .find(&from)
            .ok_or_else(|| format!("account {from} does not exist"))?;
        let mut target = accounts
            .find(&to)
            .ok_or_else(|| format!("account {to} does not exist"))?;
        if source.balance < amount {
            return Err(format!(
                "insufficient funds: account {from} holds {}, transfer needs {amount}",
                source.balance
            ));
        }
        if from == to {
            return Ok(());
        }
        source.balance -= amount;
        target.balance += amount;
        accounts.update(source)?;
        accounts.update(target)?;
        Ok(())
    }

    /// New in this version.
    #[reducer]
    pub fn set_owner(ctx: &ReducerContext, id: u64, owner: String) -> Result<(), String> {
        let mut account = ctx
            .db
            .accounts()
            .find(&id)
            .ok_or_else(|| format!("account {id} does not exist"))?;
        account.owner = Some(owner.clone());
        ctx.db.accounts().update(account)?;
        ctx.db.audit().insert(Audit {
            id: 0,
            account: id,
            note: format!("owner set to {owner}"),
        })?;
        Ok(())
    }
}
