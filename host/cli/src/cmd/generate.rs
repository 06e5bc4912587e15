//! `interstice generate`: typed client code for one module, from its
//! `.wasm` (asked for its definition; nothing is published), a published
//! module in a data directory, or a server's schema route. A type per
//! table row and per struct or enum the module declares, a typed function
//! per reducer, the tables' names and keys, and the schema fingerprint the
//! client checks on connect (docs/client-protocol.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use interstice_store::{AlgebraicType, ModuleDef, ReducerKind, VariantShape};

use crate::args::DataDir;

/// Write typed client code for a module: TypeScript (for the
/// `@interstice/client` package) or Rust (for the `interstice-client`
/// crate).
#[derive(clap::Args)]
pub struct Generate {
    /// `typescript` or `rust`.
    #[arg(long)]
    lang: Lang,
    /// The directory to write `<module>.ts` or `<module>.rs` into.
    #[arg(long)]
    out: PathBuf,
    /// The module's `.wasm` file. Without it, `--module` names a published
    /// module: on `--server`, or in `--data-dir`.
    source: Option<PathBuf>,
    /// The module's name: the published one to read, or the name the code
    /// uses (default: the file's stem).
    #[arg(long)]
    module: Option<String>,
    /// Read the published module's schema from this server.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    dir: DataDir,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Lang {
    Typescript,
    Rust,
}

impl Generate {
    pub fn run(self) -> Result<()> {
        let (name, def) = self.definition()?;
        check_name(&name)?;
        let (file, text) = match self.lang {
            Lang::Typescript => (format!("{name}.ts"), typescript(&name, &def)?),
            Lang::Rust => (format!("{name}.rs"), rust(&name, &def)?),
        };
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        let path = self.out.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }

    fn definition(&self) -> Result<(String, ModuleDef)> {
        if let Some(source) = &self.source {
            let wasm =
                std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
            let name = match &self.module {
                Some(m) => m.clone(),
                None => source
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(|s| s.replace('-', "_"))
                    .context("name the module with --module")?,
            };
            let host = interstice_runtime::Host::new(interstice_runtime::RuntimeConfig::default())?;
            let prepared = interstice_runtime::prepare_wasm(&wasm)?;
            let mut runner = interstice_runtime::Runner::compile(&host, &prepared)?;
            let def = runner.describe()?;
            return Ok((name, def));
        }
        let Some(module) = &self.module else {
            bail!("give the module's .wasm file, or --module NAME of a published module");
        };
        if let Some(server) = &self.server {
            let url = format!(
                "{}/v1/modules/{module}/schema",
                server.trim_end_matches('/')
            );
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut response = agent
                .get(&url)
                .call()
                .with_context(|| format!("contacting {url}"))?;
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string()?;
            if status != 200 {
                bail!("the server answered {status}: {body}");
            }
            let def: ModuleDef = serde_json::from_str(&body).context("the schema")?;
            return Ok((module.clone(), def));
        }
        let db = self.dir.open()?;
        let def = db
            .module_def(module)?
            .with_context(|| format!("no module named `{module}`"))?;
        Ok((module.clone(), (*def).clone()))
    }
}

/// A module name is an identifier in both languages.
fn check_name(name: &str) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("module name `{name}` is not an identifier; pass --module with one");
    }
    Ok(())
}

/// `snake_case` or `kebab-case` to `PascalCase`.
fn pascal(name: &str) -> String {
    name.split(['_', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Every struct and enum the module's tables and reducers use, by name.
fn named_types(def: &ModuleDef) -> BTreeMap<String, AlgebraicType> {
    fn walk(ty: &AlgebraicType, out: &mut BTreeMap<String, AlgebraicType>) {
        match ty {
            AlgebraicType::Option(t) | AlgebraicType::Vec(t) => walk(t, out),
            // Each named type once: a type that appears again is done.
            AlgebraicType::Product(p) => {
                if out.insert(p.name.clone(), ty.clone()).is_some() {
                    return;
                }
                for f in &p.fields {
                    walk(&f.ty, out);
                }
            }
            AlgebraicType::Sum(s) => {
                if out.insert(s.name.clone(), ty.clone()).is_some() {
                    return;
                }
                for f in s.variants.iter().flat_map(|v| &v.fields) {
                    walk(&f.ty, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for t in &def.tables {
        for c in &t.columns {
            walk(&c.ty, &mut out);
        }
    }
    for r in &def.reducers {
        for p in &r.params {
            walk(&p.ty, &mut out);
        }
    }
    out
}

/// Each public table and the name of its row type: the table's name in
/// `PascalCase`, unless a struct of that name is declared. Then the row
/// type is that struct when its fields are the table's columns (it is
/// not written twice), else the name gets `Row` appended. Whether the
/// row type is to be written comes third.
fn row_types(def: &ModuleDef) -> Vec<(&interstice_store::TableDef, String, bool)> {
    let named = named_types(def);
    public_tables(def)
        .map(|t| {
            let name = pascal(&t.name);
            match named.get(&name) {
                None => (t, name, true),
                Some(AlgebraicType::Product(p))
                    if p.fields.len() == t.columns.len()
                        && p.fields
                            .iter()
                            .zip(&t.columns)
                            .all(|(f, c)| f.name == c.name && f.ty == c.ty) =>
                {
                    (t, name, false)
                }
                Some(_) => (t, format!("{name}Row"), true),
            }
        })
        .collect()
}

/// The reducers a client may call.
fn callable(def: &ModuleDef) -> impl Iterator<Item = &interstice_store::ReducerDef> {
    def.reducers
        .iter()
        .filter(|r| r.kind == ReducerKind::Normal)
}

/// The public tables: what a client may subscribe to.
fn public_tables(def: &ModuleDef) -> impl Iterator<Item = &interstice_store::TableDef> {
    def.tables.iter().filter(|t| t.public)
}

const TS_RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "let",
    "static",
    "yield",
    "await",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
];

fn ts_ident(name: &str) -> String {
    if TS_RESERVED.contains(&name) {
        format!("{name}_")
    } else {
        name.to_string()
    }
}

/// The TypeScript type of a value's JSON form (docs/row-encoding.md
/// "JSON").
fn ts_type(ty: &AlgebraicType) -> String {
    use AlgebraicType as T;
    match ty {
        T::Bool => "boolean".into(),
        T::U8 | T::U16 | T::U32 | T::U64 | T::I8 | T::I16 | T::I32 | T::I64 => "number".into(),
        T::F32 | T::F64 => "number | \"NaN\" | \"Infinity\" | \"-Infinity\"".into(),
        T::Duration => "number".into(),
        T::U128 | T::I128 | T::String | T::Bytes | T::Identity | T::Timestamp => "string".into(),
        T::Option(t) => format!("{} | null", ts_type(t)),
        T::Vec(t) => match &**t {
            T::Option(_) => format!("({})[]", ts_type(t)),
            T::F32 | T::F64 => format!("({})[]", ts_type(t)),
            _ => format!("{}[]", ts_type(t)),
        },
        T::Product(p) => pascal(&p.name),
        T::Sum(s) => pascal(&s.name),
    }
}

fn typescript(module: &str, def: &ModuleDef) -> Result<String> {
    let mut o = String::new();
    let schema = def.fingerprint();
    writeln!(
        o,
        "// Generated by `interstice generate` from module `{module}` (schema {schema}).\n// Do not edit: generate it again when the module changes.\n"
    )?;
    writeln!(
        o,
        "import {{ Client, type CallResult, type ConnectOptions, type Table }} from \"@interstice/client\";\n"
    )?;
    writeln!(o, "export const MODULE = \"{module}\";")?;
    writeln!(o, "export const SCHEMA = \"{schema}\";\n")?;
    for (name, ty) in named_types(def) {
        match &ty {
            AlgebraicType::Product(p) => {
                writeln!(o, "export interface {} {{", pascal(&name))?;
                for f in &p.fields {
                    writeln!(o, "  {}: {};", f.name, ts_type(&f.ty))?;
                }
                writeln!(o, "}}\n")?;
            }
            AlgebraicType::Sum(s) => {
                let mut arms = Vec::new();
                for v in &s.variants {
                    arms.push(match (v.shape, v.fields.as_slice()) {
                        (VariantShape::Unit, _) => format!("\"{}\"", v.name),
                        (VariantShape::Tuple, [one]) => {
                            format!("{{ {}: {} }}", v.name, ts_type(&one.ty))
                        }
                        (VariantShape::Tuple, fields) => format!(
                            "{{ {}: [{}] }}",
                            v.name,
                            fields
                                .iter()
                                .map(|f| ts_type(&f.ty))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        (VariantShape::Struct, fields) => format!(
                            "{{ {}: {{ {} }} }}",
                            v.name,
                            fields
                                .iter()
                                .map(|f| format!("{}: {}", f.name, ts_type(&f.ty)))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    });
                }
                writeln!(
                    o,
                    "export type {} =\n  | {};\n",
                    pascal(&name),
                    arms.join("\n  | ")
                )?;
            }
            _ => {}
        }
    }
    let rows = row_types(def);
    for (t, name, write) in &rows {
        if !write {
            continue;
        }
        writeln!(o, "/** A row of table `{}`. */", t.name)?;
        writeln!(o, "export interface {name} {{")?;
        for c in &t.columns {
            writeln!(o, "  {}: {};", c.name, ts_type(&c.ty))?;
        }
        writeln!(o, "}}\n")?;
    }
    writeln!(o, "/** Each public table's primary-key column. */")?;
    writeln!(o, "export const TABLES = {{")?;
    for t in public_tables(def) {
        let key = &t.columns[t.primary_key as usize].name;
        writeln!(o, "  {}: {{ key: \"{key}\" }},", t.name)?;
    }
    writeln!(o, "}} as const;\n")?;
    writeln!(
        o,
        "/** The module's reducers: each resolves once its call is durable. */"
    )?;
    writeln!(o, "export class Reducers {{")?;
    writeln!(o, "  constructor(private readonly client: Client) {{}}")?;
    for r in callable(def) {
        let params: Vec<String> = r
            .params
            .iter()
            .map(|p| format!("{}: {}", ts_ident(&p.name), ts_type(&p.ty)))
            .collect();
        let args: Vec<String> = r.params.iter().map(|p| ts_ident(&p.name)).collect();
        writeln!(
            o,
            "  {}({}): Promise<CallResult> {{\n    return this.client.call(\"{}\", [{}]);\n  }}",
            ts_ident(&r.name),
            params.join(", "),
            r.name,
            args.join(", ")
        )?;
    }
    writeln!(o, "}}\n")?;
    writeln!(o, "/** The live cache, a typed view per public table. */")?;
    writeln!(o, "export interface Db {{")?;
    for (t, name, _) in &rows {
        writeln!(o, "  {}: Table<{name}>;", t.name)?;
    }
    writeln!(o, "}}\n")?;
    writeln!(
        o,
        "/** Connects to the module; refused when its schema is not the one this code was generated from. */"
    )?;
    writeln!(
        o,
        "export async function connect(options: Omit<ConnectOptions, \"module\" | \"schema\"> & {{ module?: string }}): Promise<{{ client: Client; db: Db; reducers: Reducers }}> {{"
    )?;
    writeln!(
        o,
        "  const client = await Client.connect({{ ...options, module: options.module ?? MODULE, schema: SCHEMA }});"
    )?;
    writeln!(o, "  const db: Db = {{")?;
    for (t, name, _) in &rows {
        writeln!(o, "    {0}: client.table<{name}>(\"{0}\"),", t.name)?;
    }
    writeln!(o, "  }};")?;
    writeln!(
        o,
        "  return {{ client, db, reducers: new Reducers(client) }};"
    )?;
    writeln!(o, "}}")?;
    Ok(o)
}

const RUST_RESERVED: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

fn rust_ident(name: &str) -> String {
    if RUST_RESERVED.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_string()
    }
}

/// The Rust type that (de)serializes as the value's JSON form.
fn rust_type(ty: &AlgebraicType) -> String {
    use AlgebraicType as T;
    match ty {
        T::Bool => "bool".into(),
        T::U8 => "u8".into(),
        T::U16 => "u16".into(),
        T::U32 => "u32".into(),
        T::U64 => "u64".into(),
        T::I8 => "i8".into(),
        T::I16 => "i16".into(),
        T::I32 => "i32".into(),
        T::I64 | T::Duration => "i64".into(),
        // Non-finite floats are strings in JSON: a `Value` holds either.
        T::F32 | T::F64 => "serde_json::Value".into(),
        // Decimal strings, hex strings, RFC 3339 strings.
        T::U128 | T::I128 | T::String | T::Bytes | T::Identity | T::Timestamp => "String".into(),
        T::Option(t) => format!("Option<{}>", rust_type(t)),
        T::Vec(t) => format!("Vec<{}>", rust_type(t)),
        T::Product(p) => pascal(&p.name),
        T::Sum(s) => pascal(&s.name),
    }
}

const RUST_DERIVE: &str =
    "#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]";

fn rust(module: &str, def: &ModuleDef) -> Result<String> {
    let mut o = String::new();
    let schema = def.fingerprint();
    writeln!(
        o,
        "//! Generated by `interstice generate` from module `{module}` (schema {schema}).\n//! Do not edit: generate it again when the module changes. Needs the\n//! crates `interstice-client`, `serde` (with `derive`) and `serde_json`.\n"
    )?;
    writeln!(o, "#![allow(dead_code, clippy::too_many_arguments)]\n")?;
    writeln!(
        o,
        "use interstice_client::{{CallResult, Client, ClientError}};\n"
    )?;
    writeln!(o, "pub const MODULE: &str = \"{module}\";")?;
    writeln!(o, "pub const SCHEMA: &str = \"{schema}\";\n")?;
    for (name, ty) in named_types(def) {
        match &ty {
            AlgebraicType::Product(p) => {
                writeln!(o, "{RUST_DERIVE}\npub struct {} {{", pascal(&name))?;
                for f in &p.fields {
                    writeln!(o, "    pub {}: {},", rust_ident(&f.name), rust_type(&f.ty))?;
                }
                writeln!(o, "}}\n")?;
            }
            AlgebraicType::Sum(s) => {
                writeln!(o, "{RUST_DERIVE}\npub enum {} {{", pascal(&name))?;
                for v in &s.variants {
                    match v.shape {
                        VariantShape::Unit => writeln!(o, "    {},", v.name)?,
                        VariantShape::Tuple => writeln!(
                            o,
                            "    {}({}),",
                            v.name,
                            v.fields
                                .iter()
                                .map(|f| rust_type(&f.ty))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )?,
                        VariantShape::Struct => writeln!(
                            o,
                            "    {} {{ {} }},",
                            v.name,
                            v.fields
                                .iter()
                                .map(|f| format!("{}: {}", rust_ident(&f.name), rust_type(&f.ty)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )?,
                    }
                }
                writeln!(o, "}}\n")?;
            }
            _ => {}
        }
    }
    for (t, name, write) in row_types(def) {
        if write {
            writeln!(o, "/// A row of table `{}`.", t.name)?;
            writeln!(o, "{RUST_DERIVE}\npub struct {name} {{")?;
            for c in &t.columns {
                writeln!(o, "    pub {}: {},", rust_ident(&c.name), rust_type(&c.ty))?;
            }
            writeln!(o, "}}\n")?;
        }
        writeln!(o, "impl {name} {{")?;
        writeln!(o, "    pub const TABLE: &'static str = \"{}\";", t.name)?;
        writeln!(
            o,
            "    /// The rows of `{}` the client's subscriptions hold, in primary-key order.\n    pub fn cached(client: &Client) -> Result<Vec<{name}>, serde_json::Error> {{\n        client\n            .rows(Self::TABLE)\n            .into_iter()\n            .map(serde_json::from_value)\n            .collect()\n    }}",
            t.name
        )?;
        writeln!(o, "}}\n")?;
    }
    writeln!(
        o,
        "/// The module's reducers: each call resolves once durable."
    )?;
    writeln!(o, "pub struct Reducers<'c>(pub &'c Client);\n")?;
    writeln!(o, "impl Reducers<'_> {{")?;
    for r in callable(def) {
        let params: Vec<String> = r
            .params
            .iter()
            .map(|p| format!("{}: {}", rust_ident(&p.name), rust_type(&p.ty)))
            .collect();
        let args: Vec<String> = r.params.iter().map(|p| rust_ident(&p.name)).collect();
        let mut signature = vec!["&self".to_string()];
        signature.extend(params);
        writeln!(
            o,
            "    pub fn {}(\n        {},\n    ) -> impl Future<Output = Result<CallResult, ClientError>> + use<> {{\n        self.0.call(\"{}\", serde_json::json!([{}]))\n    }}",
            rust_ident(&r.name),
            signature.join(",\n        "),
            r.name,
            args.join(", ")
        )?;
    }
    writeln!(o, "}}\n")?;
    writeln!(
        o,
        "/// Connects to the module; refused when its schema is not the one this\n/// code was generated from.\npub async fn connect(mut options: interstice_client::Connect) -> Result<Client, ClientError> {{\n    options.schema = Some(SCHEMA.to_string());\n    Client::connect(options).await\n}}"
    )?;
    Ok(o)
}
