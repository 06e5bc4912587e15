//! A module whose `describe` is malformed (two tables with one name), written
//! against the raw bindings, for the host's validation tests.

use interstice_sdk::bindings::interstice::module::types::ReducerContext;
use interstice_sdk::{ColumnDef, ModuleDef, ScalarType, TableDef, TypeDef};

struct BadDescribe;

fn table(name: &str) -> TableDef {
    TableDef {
        name: name.to_string(),
        columns: vec![ColumnDef {
            name: "id".to_string(),
            // Entry 0 of the typespace below.
            ty: 0,
            default: None,
        }],
        primary_key: 0,
        auto_inc: None,
        indexes: vec![],
        ephemeral: false,
        public: false,
        scheduled: None,
    }
}

impl interstice_sdk::bindings::Guest for BadDescribe {
    fn describe() -> ModuleDef {
        ModuleDef {
            abi_version: interstice_sdk::ABI_VERSION,
            typespace: vec![TypeDef::Scalar(ScalarType::U64)],
            tables: vec![table("things"), table("things")],
            reducers: vec![],
        }
    }

    fn call_reducer(_ctx: ReducerContext, _reducer: u32, _args: Vec<u8>) -> Result<(), String> {
        Err("this module has no reducers".to_string())
    }
}

interstice_sdk::bindings::__export_module!(BadDescribe);
