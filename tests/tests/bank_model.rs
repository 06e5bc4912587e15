//! Random sequences of bank calls against a model: the guest's state always
//! matches, and transfers never create or destroy money. Every bank runs
//! them: the Rust one (for both targets) and the Python one.

use std::collections::BTreeMap;

use interstice_runtime::{CallError, Database};
use interstice_tests::{BANKS, db_with};
use proptest::prelude::*;
use serde_json::json;

#[derive(Clone, Debug)]
enum Op {
    Open { id: u64, balance: u64 },
    Deposit { id: u64, amount: u64 },
    Transfer { from: u64, to: u64, amount: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..8;
    prop_oneof![
        (id.clone(), 0u64..1000).prop_map(|(id, balance)| Op::Open { id, balance }),
        (id.clone(), 0u64..100).prop_map(|(id, amount)| Op::Deposit { id, amount }),
        (id.clone(), id, 0u64..600).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
    ]
}

/// What the bank should do: `Some(new state)` on commit, `None` on refusal.
fn model(state: &BTreeMap<u64, u64>, op: &Op) -> Option<BTreeMap<u64, u64>> {
    let mut next = state.clone();
    match *op {
        Op::Open { id, balance } => {
            if next.insert(id, balance).is_some() {
                return None;
            }
        }
        Op::Deposit { id, amount } => *next.get_mut(&id)? += amount,
        Op::Transfer { from, to, amount } => {
            let source = *next.get(&from)?;
            next.get(&to)?;
            if source < amount {
                return None;
            }
            *next.get_mut(&from)? -= amount;
            *next.get_mut(&to)? += amount;
        }
    }
    Some(next)
}

fn call(db: &Database, op: &Op) -> Result<(), CallError> {
    let (name, args) = match *op {
        Op::Open { id, balance } => ("open_account", json!([id, balance])),
        Op::Deposit { id, amount } => ("deposit", json!([id, amount])),
        Op::Transfer { from, to, amount } => ("transfer", json!([from, to, amount])),
    };
    db.call_json("bank", name, &args, &interstice_runtime::Caller::operator())
        .map(drop)
}

fn accounts(db: &Database) -> BTreeMap<u64, u64> {
    db.rows_json("bank", "accounts")
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["balance"].as_u64().unwrap()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn bank_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        for (_, guest) in BANKS {
            check_against_model(guest, &ops)?;
        }
    }
}

fn check_against_model(guest: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let (_dir, db) = db_with("bank", guest);
    let mut state = BTreeMap::new();
    for op in ops {
        // Money on the guest's own tables, not the model's.
        let total_before: u64 = accounts(&db).values().sum();
        let expected = model(&state, op);
        let result = call(&db, op);
        match (&expected, &result) {
            (Some(next), Ok(())) => state = next.clone(),
            (None, Err(CallError::Reducer(_))) => {}
            _ => prop_assert!(
                false,
                "{guest}: {op:?}: model {expected:?}, guest {result:?}"
            ),
        }
        let rows = accounts(&db);
        if let Op::Transfer { .. } = op {
            prop_assert_eq!(
                rows.values().sum::<u64>(),
                total_before,
                "{}: {:?} made or lost money",
                guest,
                op
            );
        }
        prop_assert_eq!(&rows, &state, "{}", guest);
    }
    Ok(())
}
