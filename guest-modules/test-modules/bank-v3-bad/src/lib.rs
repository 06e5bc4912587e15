//! A version of the bank that cannot replace `bank-v2` without losing data:
//! `balance` changes type, `owner` is gone, `deposit` is gone, and there is
//! no migration reducer. Publishing it is refused unless the operator
//! clears the module's data.

#[interstice_sdk::module]
mod bank {
    use interstice_sdk::prelude::*;

    #[table(name = accounts, public)]
    pub struct Account {
        #[primary_key]
        pub id: u64,
        pub balance: i64,
        #[default(7)]
        #[index(btree)]
        pub branch: u32,
    }

    #[table(name = audit, public)]
    pub struct Audit {
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        pub account: u64,
        pub note: String,
    }

    #[reducer]
    pub fn open_account(ctx: &ReducerContext, id: u64, balance: i64) -> Result<(), String> {
        ctx.db
            .accounts()
            .insert(Account {
                id,
                balance,
                branch: 1,
            })
            .map_err(|_| format!("account {id} already exists"))?;
        Ok(())
    }

    #[reducer]
    pub fn transfer(ctx: &ReducerContext, from: u64, to: u64, amount: i64) -> Result<(), String> {
        let accounts = ctx.db.accounts();
        let mut source = accounts.find(&from).ok_or("no such source")?;
        let mut target = accounts.find(&to).ok_or("no such target")?;
        source.balance -= amount;
        target.balance += amount;
        accounts.update(source)?;
        accounts.update(target)?;
        Ok(())
    }

    #[reducer]
    pub fn set_owner(_ctx: &ReducerContext, _id: u64, _owner: String) {}
}
