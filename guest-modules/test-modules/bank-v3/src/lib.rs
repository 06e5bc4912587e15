//! A third version of the bank, after `bank-v2`: it drops the `audit` table
//! and the `set_owner` reducer (changes that lose data or break callers, so
//! they need a migration reducer) and adds a `tier` column that the
//! migration reducer fills in from each balance. The migration refuses to
//! run while any account holds more than 1,000,000.

#[interstice_sdk::module]
mod bank {
    use interstice_sdk::prelude::*;

    #[table(name = accounts, public)]
    pub struct Account {
        #[primary_key]
        pub id: u64,
        pub balance: u64,
        #[default(7)]
        #[index(btree)]
        pub branch: u32,
        pub owner: Option<String>,
        #[default(0)]
        pub tier: u32,
    }

    #[reducer(migrate)]
    pub fn migrate(ctx: &ReducerContext) -> Result<(), String> {
        let accounts: Vec<Account> = ctx.db.accounts().iter().collect();
        for mut account in accounts {
            if account.balance > 1_000_000 {
                return Err(format!(
                    "account {} holds more than 1000000; cannot migrate",
                    account.id
                ));
            }
            account.tier = (account.balance / 100) as u32;
            ctx.db.accounts().update(account)?;
        }
        Ok(())
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
                tier: (balance / 100) as u32,
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
        account.tier = (account.balance / 100) as u32;
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
}
