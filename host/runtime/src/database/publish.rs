//! Publication and deletion of modules. Which case a publication is (same
//! code, first, additive, migration, clear, refused) is decided by
//! [`choose`], a pure function of the two definitions; [`publish`] carries
//! the choice out through the commit path.

use std::sync::Arc;

use interstice_store::migrate::{self, Plan as MigrationPlan};
use interstice_store::{Identity, ModuleDef, Tables, TxLog};

use super::call::CallOutcome;
use super::catalog::{Catalog, Code, ModuleEntry};
use super::commit::{Change, Draft, Pending, Pipeline};
use crate::caller::Caller;
use crate::error::{DropError, PublishError};
use crate::limits;
use crate::sandbox::{CallContext, Committed, Runner};

/// What publication did.
#[derive(Debug)]
pub struct Published {
    pub def: Arc<ModuleDef>,
    /// The definition's version now in force.
    pub version: u32,
    /// What the init reducer (first publication, or `clear`) or the
    /// migration reducer (a new version) did, if one ran.
    pub init: Option<CallOutcome>,
    /// Whether the module replaced code of the same definition.
    pub replaced: bool,
    /// The publication's transaction (none when only the code was replaced).
    pub tx_id: Option<u64>,
    /// For a new version: what changed, one line each.
    pub changes: Vec<String>,
}

/// How [`crate::Database::publish_with`] treats a new version, and who
/// publishes it.
#[derive(Clone, Copy, Debug)]
pub struct PublishOptions {
    /// Drop the module's data: the new version starts from empty tables and
    /// runs its init reducer, whatever changed.
    pub clear: bool,
    /// Who publishes: the operator may publish anything; anyone else only
    /// over a module they own, or a new one when `anyone_may_create`.
    pub by: Identity,
    /// The owner of a new module: the operator may name anyone; anyone else
    /// only themselves. Default: whoever publishes. Ignored for a module
    /// that exists, whose owner never changes.
    pub owner: Option<Identity>,
    /// Whether identities other than the operator may publish new names.
    pub anyone_may_create: bool,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            clear: false,
            by: Identity::operator(),
            owner: None,
            anyone_may_create: false,
        }
    }
}

/// Who may publish over `existing` (the owner in force, if the module
/// exists), and who owns the result.
pub(crate) fn owner_for(
    name: &str,
    existing: Option<Identity>,
    options: &PublishOptions,
) -> Result<Identity, PublishError> {
    let operator = options.by == Identity::operator();
    match existing {
        Some(owner) if operator || owner == options.by => Ok(owner),
        Some(owner) => Err(PublishError::NotOwner {
            module: name.to_string(),
            owner,
        }),
        None if operator => Ok(options.owner.unwrap_or(options.by)),
        None if !options.anyone_may_create => Err(PublishError::MayNotCreate(name.to_string())),
        None => match options.owner {
            Some(owner) if owner != options.by => Err(PublishError::OwnerNotSelf),
            _ => Ok(options.by),
        },
    }
}

/// Which kind of publication a new module definition makes.
#[derive(Debug)]
pub(crate) enum Choice {
    /// The definition is the one in force: only the code is replaced, and
    /// nothing is logged.
    SameDefinition { version: u32 },
    /// No module of that name: empty tables, then the init reducer.
    First,
    /// `clear`: the old data is dropped; empty tables, then the init reducer.
    Clear { version: u32, changes: Vec<String> },
    /// The old tables migrate (additive changes, or a migration reducer
    /// that takes care of the rest), then the migration reducer, if any.
    Migrate {
        version: u32,
        plan: MigrationPlan,
        changes: Vec<String>,
    },
}

/// Decides what publishing `def` as `name` over `existing` (its definition
/// and version) does, or why it is refused.
pub(crate) fn choose(
    name: &str,
    existing: Option<(&ModuleDef, u32)>,
    def: &ModuleDef,
    options: PublishOptions,
) -> Result<Choice, PublishError> {
    let Some((old, old_version)) = existing else {
        return Ok(Choice::First);
    };
    if old.same_as(def) && !options.clear {
        return Ok(Choice::SameDefinition {
            version: old_version,
        });
    }
    let plan = migrate::plan(old, def);
    let mut changes = plan.additive.clone();
    changes.extend(plan.breaking.iter().cloned());
    let version = old_version + 1;
    if options.clear {
        changes.push(format!("all data of `{name}` cleared"));
        return Ok(Choice::Clear { version, changes });
    }
    if plan.is_additive() || def.migrate_reducer().is_some() {
        return Ok(Choice::Migrate {
            version,
            plan,
            changes,
        });
    }
    Err(PublishError::SchemaChanged {
        module: name.to_string(),
        changes: plan.breaking,
    })
}

/// Module names become file names and URL segments.
pub(crate) fn check_name(name: &str) -> Result<(), PublishError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MODULE_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(PublishError::InvalidName(name.to_string()))
    }
}

/// A publication ready to be carried out: the module's compiled code and
/// the definition it describes.
pub(crate) struct Candidate<'a> {
    pub name: &'a str,
    pub wasm: &'a [u8],
    pub runner: Runner,
    /// As described; its owner is set by [`publish`].
    pub def: ModuleDef,
    pub options: PublishOptions,
}

/// A candidate whose owner is settled.
pub(crate) struct Prepared<'a> {
    pub name: &'a str,
    pub wasm: &'a [u8],
    pub runner: Runner,
    pub def: Arc<ModuleDef>,
    pub options: PublishOptions,
}

/// Where a publication's transaction starts: its tables before the
/// reducer runs, and which reducer that is.
struct Start {
    first: bool,
    version: u32,
    tables: Tables,
    reducer: Option<u32>,
    changes: Vec<String>,
}

fn start(choice: Choice, old: Option<&Tables>, c: &Prepared<'_>) -> Result<Start, PublishError> {
    let def = &c.def;
    let (first, version, tables, reducer, changes) = match choice {
        Choice::SameDefinition { .. } => unreachable!("handled before a transaction starts"),
        Choice::First => (true, 1, Tables::new(def), def.init_reducer(), Vec::new()),
        Choice::Clear { version, changes } => (
            false,
            version,
            Tables::new(def),
            def.init_reducer(),
            changes,
        ),
        Choice::Migrate {
            version,
            plan,
            changes,
        } => {
            let old = old.expect("a migration is chosen only over a published module");
            let tables =
                migrate::apply(&plan, old, def).map_err(|e| PublishError::MigrationRefused {
                    module: c.name.to_string(),
                    reason: e.to_string(),
                })?;
            (false, version, tables, def.migrate_reducer(), changes)
        }
    };
    Ok(Start {
        first,
        version,
        tables,
        reducer,
        changes,
    })
}

/// Runs the init or migration reducer, if there is one, on the new tables.
fn run_reducer(
    c: &mut Prepared<'_>,
    start: &mut Start,
    ctx: &CallContext,
) -> Result<Option<(String, Committed)>, PublishError> {
    let Some(id) = start.reducer else {
        return Ok(None);
    };
    let reducer = c.def.reducers[id as usize].name.clone();
    let def = c.def.clone();
    let now = ctx.timestamp_micros;
    let mut then =
        |tables: &mut Tables, tx: &mut TxLog| super::schedule::track(&def, tables, tx, 0, now);
    match c
        .runner
        .call_then(&mut start.tables, ctx, id, &[], &mut then)
    {
        Ok(committed) => Ok(Some((reducer, committed))),
        Err(source) => Err(PublishError::InitFailed {
            module: c.name.to_string(),
            reducer,
            source,
        }),
    }
}

/// Carries out the publication on the held catalog. The returned pending
/// transaction (none when only the code was replaced) must be made durable
/// after letting go.
pub(crate) fn publish<'l>(
    catalog: &mut Catalog,
    code: &Code,
    pipeline: &'l Pipeline,
    c: Candidate<'_>,
) -> Result<(Published, Option<Pending<'l>>), PublishError> {
    pipeline.writable().map_err(PublishError::Durability)?;
    let existing = catalog.modules.get(c.name);
    let owner = owner_for(c.name, existing.map(|e| e.def.owner()), &c.options)?;
    let mut def = c.def;
    def.owner = Some(owner);
    let mut c = Prepared {
        name: c.name,
        wasm: c.wasm,
        runner: c.runner,
        def: Arc::new(def),
        options: c.options,
    };
    let choice = choose(
        c.name,
        existing.map(|e| (&*e.def, e.version)),
        &c.def,
        c.options,
    )?;
    if let Choice::SameDefinition { version } = choice {
        return replace_code(catalog, code, c, version).map(|p| (p, None));
    }
    let mut start = start(choice, existing.map(|e| &e.tables), &c)?;
    let ctx = catalog
        .clock
        .next(&Caller::identity(c.options.by), owner, c.name);
    let ran = run_reducer(&mut c, &mut start, &ctx)?;
    // Rows of tables that became schedule tables get their entries; those
    // of tables that are gone lose theirs.
    let mut host = TxLog::new();
    super::schedule::reconcile(&c.def, &mut start.tables, &mut host, ctx.timestamp_micros)
        .map_err(|source| PublishError::InitFailed {
            module: c.name.to_string(),
            reducer: "(schedules)".to_string(),
            source,
        })?;
    let reconciled = start.tables.commit(&mut host);
    // The code is on disk before the record that makes it part of the
    // database, so a durable publication always has its code. Each version
    // has its own file: the old version's stays in force (and on disk) if
    // this record never becomes durable.
    code.write(c.name, start.version, c.wasm)
        .map_err(|(path, source)| PublishError::Io { path, source })?;
    let reducer = ran.as_ref().map_or("", |(r, _)| r.as_str());
    let mut mutations = ran
        .as_ref()
        .map(|(_, committed)| committed.mutations.clone())
        .unwrap_or_default();
    mutations.extend(reconciled);
    let draft = Draft {
        ctx: &ctx,
        module: c.name,
        change: Change::Publish {
            first: start.first,
            version: start.version,
            clear: c.options.clear,
        },
        reducer,
        mutations: &mutations,
        def: Some(&c.def),
        queries: Vec::new(),
    };
    let pending = pipeline
        .commit(&mut catalog.clock, draft, false)
        .map_err(PublishError::Durability)?;
    let entry = ModuleEntry {
        def: c.def.clone(),
        version: start.version,
        tables: start.tables,
        runner: Some(c.runner),
    };
    catalog.modules.insert(c.name.to_string(), entry);
    // Live queries were bound to the old definition.
    catalog.live.forget(c.name);
    if c.def.has_schedules() {
        catalog.scheduler.wake();
    }
    let published = Published {
        def: c.def,
        version: start.version,
        init: ran.map(|(_, committed)| CallOutcome::new(&ctx, committed)),
        replaced: false,
        tx_id: Some(ctx.tx_id),
        changes: start.changes,
    };
    Ok((published, Some(pending)))
}

/// The same definition: the new code replaces the old, nothing is logged.
fn replace_code(
    catalog: &mut Catalog,
    code: &Code,
    c: Prepared<'_>,
    version: u32,
) -> Result<Published, PublishError> {
    code.write(c.name, version, c.wasm)
        .map_err(|(path, source)| PublishError::Io { path, source })?;
    if let Some(existing) = catalog.modules.get_mut(c.name) {
        existing.runner = Some(c.runner);
    }
    Ok(Published {
        def: c.def,
        version,
        init: None,
        replaced: true,
        tx_id: None,
        changes: Vec::new(),
    })
}

/// Deletes a module and all its data as one transaction, on the held
/// catalog. Returns the pending deletion and the last version, whose code
/// files go once the deletion is durable.
pub(crate) fn drop_module<'l>(
    catalog: &mut Catalog,
    pipeline: &'l Pipeline,
    name: &str,
    by: Identity,
) -> Result<(Pending<'l>, u32), DropError> {
    pipeline.writable().map_err(DropError::Durability)?;
    let Some(entry) = catalog.modules.get(name) else {
        return Err(DropError::UnknownModule(name.to_string()));
    };
    let owner = entry.def.owner();
    if by != Identity::operator() && by != owner {
        return Err(DropError::NotOwner {
            module: name.to_string(),
            owner,
        });
    }
    let last_version = entry.version;
    let ctx = catalog.clock.next(&Caller::identity(by), owner, name);
    let draft = Draft {
        ctx: &ctx,
        module: name,
        change: Change::Drop,
        reducer: "",
        mutations: &[],
        def: None,
        queries: Vec::new(),
    };
    let pending = pipeline
        .commit(&mut catalog.clock, draft, false)
        .map_err(DropError::Durability)?;
    catalog.modules.remove(name);
    catalog.live.forget(name);
    Ok((pending, last_version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use interstice_store::{AlgebraicType, ColumnDef, ParamDef, ReducerDef, ReducerKind, TableDef};

    fn column(name: &str, default: Option<Vec<u8>>) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            ty: AlgebraicType::I64,
            default,
        }
    }

    /// A module with one table of these columns, and a migration reducer
    /// when `migrates`.
    fn module(columns: Vec<ColumnDef>, migrates: bool) -> ModuleDef {
        let mut reducers = vec![ReducerDef {
            name: "put".into(),
            params: vec![ParamDef {
                name: "id".into(),
                ty: columns[0].ty.clone(),
            }],
            kind: ReducerKind::Normal,
        }];
        if migrates {
            reducers.push(ReducerDef {
                name: "upgrade".into(),
                params: Vec::new(),
                kind: ReducerKind::Migrate,
            });
        }
        ModuleDef {
            owner: None,
            abi_version: 1,
            tables: vec![TableDef {
                public: false,
                name: "t".into(),
                columns,
                primary_key: 0,
                auto_inc: None,
                indexes: Vec::new(),
                ephemeral: false,
                scheduled: None,
            }],
            reducers,
        }
    }

    const NO_CLEAR: PublishOptions = options(false);
    const CLEAR: PublishOptions = options(true);

    const fn options(clear: bool) -> PublishOptions {
        PublishOptions {
            clear,
            by: Identity([0; 32]),
            owner: None,
            anyone_may_create: false,
        }
    }

    #[test]
    fn only_the_operator_and_the_owner_may_publish_over_a_module() {
        let operator = Identity::operator();
        let (ann, bob) = (Identity([1; 32]), Identity([2; 32]));
        let by = |by, owner, anyone_may_create| PublishOptions {
            by,
            owner,
            anyone_may_create,
            ..PublishOptions::default()
        };
        // A new module: the operator names anyone, default itself.
        assert_eq!(
            owner_for("m", None, &by(operator, None, false)).unwrap(),
            operator
        );
        assert_eq!(
            owner_for("m", None, &by(operator, Some(ann), false)).unwrap(),
            ann
        );
        // Anyone else only when the server allows it, and only for itself.
        assert!(matches!(
            owner_for("m", None, &by(ann, None, false)),
            Err(PublishError::MayNotCreate(_))
        ));
        assert_eq!(owner_for("m", None, &by(ann, None, true)).unwrap(), ann);
        assert_eq!(
            owner_for("m", None, &by(ann, Some(ann), true)).unwrap(),
            ann
        );
        assert!(matches!(
            owner_for("m", None, &by(ann, Some(bob), true)),
            Err(PublishError::OwnerNotSelf)
        ));
        // An existing module keeps its owner; only the owner and the
        // operator may publish over it.
        assert_eq!(
            owner_for("m", Some(ann), &by(ann, Some(bob), false)).unwrap(),
            ann
        );
        assert_eq!(
            owner_for("m", Some(ann), &by(operator, Some(bob), false)).unwrap(),
            ann
        );
        assert!(matches!(
            owner_for("m", Some(ann), &by(bob, None, true)),
            Err(PublishError::NotOwner { owner, .. }) if owner == ann
        ));
    }

    #[test]
    fn choose_names_every_kind_of_publication() {
        let v1 = module(vec![column("id", None), column("a", None)], false);
        assert!(matches!(
            choose("m", None, &v1, NO_CLEAR),
            Ok(Choice::First)
        ));
        assert!(matches!(choose("m", None, &v1, CLEAR), Ok(Choice::First)));
        assert!(matches!(
            choose("m", Some((&v1, 3)), &v1, NO_CLEAR),
            Ok(Choice::SameDefinition { version: 3 })
        ));
        match choose("m", Some((&v1, 3)), &v1, CLEAR) {
            Ok(Choice::Clear { version, changes }) => {
                assert_eq!(version, 4);
                assert_eq!(changes, vec!["all data of `m` cleared".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        // A new column at the end with a default: additive.
        let added = module(
            vec![
                column("id", None),
                column("a", None),
                column("b", Some(vec![0; 8])),
            ],
            false,
        );
        match choose("m", Some((&v1, 3)), &added, NO_CLEAR) {
            Ok(Choice::Migrate {
                version,
                plan,
                changes,
            }) => {
                assert_eq!(version, 4);
                assert!(plan.is_additive(), "{changes:?}");
                assert_eq!(changes.len(), 1, "{changes:?}");
                assert!(changes[0].contains('b'), "{changes:?}");
            }
            other => panic!("{other:?}"),
        }
        // A column dropped: refused, unless a migration reducer takes care.
        let dropped = module(vec![column("id", None)], false);
        match choose("m", Some((&v1, 3)), &dropped, NO_CLEAR) {
            Err(PublishError::SchemaChanged { module, changes }) => {
                assert_eq!(module, "m");
                assert!(!changes.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let migrated = module(vec![column("id", None)], true);
        match choose("m", Some((&v1, 3)), &migrated, NO_CLEAR) {
            Ok(Choice::Migrate { version, plan, .. }) => {
                assert_eq!(version, 4);
                assert!(!plan.is_additive());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn module_names_become_file_names_and_url_segments() {
        for ok in ["bank", "a-b_c", "x1", &"n".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a/b", "..", "a b", "ä", &"n".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(PublishError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }
}
