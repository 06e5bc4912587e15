//! The fund-transfer workload: accounts with balances, and transfers that
//! fail, changing nothing, when an account is missing or funds are short.

#[interstice_sdk::module]
mod bank {
    use interstice_sdk::prelude::*;

    #[table(name = accounts, public)]
    pub struct Account {
        #[primary_key]
        pub id: u64,
        pub balance: u64,
    }

    /// Opens account `id` with an initial balance; fails if it exists.
    #[reducer]
    pub fn open_account(ctx: &ReducerContext, id: u64, balance: u64) -> Result<(), String> {
        ctx.db
            .accounts()
            .insert(Account { id, balance })
            .map_err(|_| format!("account {id} already exists"))?;
        Ok(())
    }

    /// Adds `amount` to account `id`.
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

    /// Moves `amount` from account `from` to account `to`.
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
        target.balance = target
            .balance
            .checked_add(amount)
            .ok_or_else(|| format!("transfer would overflow account {to}"))?;
        accounts.update(source)?;
        accounts.update(target)?;
        Ok(())
    }
}
