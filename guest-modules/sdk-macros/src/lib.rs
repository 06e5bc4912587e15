//! Procedural macros of the Interstice guest SDK.
//!
//! `#[module]` on an inline `mod` reads every `#[table]` struct and
//! `#[reducer]` function inside it, in source order, and generates the
//! module's `describe` and `call-reducer` exports, the table traits and the
//! typed accessors. Table ids and reducer ids are positions in source order.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::Parse;
use syn::{
    Attribute, Error, FnArg, Ident, Item, ItemFn, ItemMod, ItemStruct, LitStr, Pat, Result,
    ReturnType, Type, parse_macro_input, spanned::Spanned,
};

/// Turns an inline module into an Interstice reducer module.
#[proc_macro_attribute]
pub fn module(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return Error::new(Span::call_site(), "#[module] takes no arguments")
            .to_compile_error()
            .into();
    }
    let module = parse_macro_input!(item as ItemMod);
    match expand_module(module) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Makes a struct with named fields, or an enum, usable as a column or
/// reducer parameter type (`interstice_sdk::Column`). A struct is its fields
/// in declaration order; an enum is its variant's index (one byte, in
/// declaration order) and then that variant's fields.
#[proc_macro_derive(Type)]
pub fn derive_type(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as syn::DeriveInput);
    match expand_type(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_type(input: &syn::DeriveInput) -> Result<TokenStream2> {
    let sdk = quote!(::interstice_sdk);
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "#[derive(Type)] does not support generic types",
        ));
    }
    let ident = &input.ident;
    let name = ident.to_string();
    let (define, encode, decode) = match &input.data {
        syn::Data::Struct(data) => {
            let syn::Fields::Named(fields) = &data.fields else {
                return Err(Error::new(
                    ident.span(),
                    "#[derive(Type)] needs a struct with named fields, or an enum",
                ));
            };
            let idents: Vec<_> = fields.named.iter().map(|f| f.ident.clone()).collect();
            let names: Vec<_> = idents
                .iter()
                .map(|i| i.as_ref().expect("named").to_string())
                .collect();
            let types: Vec<_> = fields.named.iter().map(|f| &f.ty).collect();
            (
                quote! {
                    #sdk::TypeDef::Product(#sdk::ProductDef {
                        name: ::std::string::String::from(#name),
                        fields: ::std::vec![ #( #sdk::__private::field_def::<#types>(space, #names), )* ],
                    })
                },
                quote!( #( #sdk::Column::encode(&self.#idents, out); )* ),
                quote!( ::core::result::Result::Ok(Self { #( #idents: <#types as #sdk::Column>::decode(r)?, )* }) ),
            )
        }
        syn::Data::Enum(data) => {
            if data.variants.is_empty() || data.variants.len() > 256 {
                return Err(Error::new(
                    ident.span(),
                    "#[derive(Type)] needs an enum of 1 to 256 variants",
                ));
            }
            let mut variant_defs = Vec::new();
            let mut encode_arms = Vec::new();
            let mut decode_arms = Vec::new();
            for (tag, v) in data.variants.iter().enumerate() {
                let tag = tag as u8;
                let vident = &v.ident;
                let vname = vident.to_string();
                let (shape, names, types): (TokenStream2, Vec<String>, Vec<&Type>) = match &v.fields
                {
                    syn::Fields::Unit => (quote!(Unit), Vec::new(), Vec::new()),
                    syn::Fields::Unnamed(f) => (
                        quote!(Tuple),
                        (0..f.unnamed.len()).map(|i| i.to_string()).collect(),
                        f.unnamed.iter().map(|f| &f.ty).collect(),
                    ),
                    syn::Fields::Named(f) => (
                        quote!(Struct),
                        f.named
                            .iter()
                            .map(|f| f.ident.as_ref().expect("named").to_string())
                            .collect(),
                        f.named.iter().map(|f| &f.ty).collect(),
                    ),
                };
                variant_defs.push(quote! {
                    #sdk::VariantDef {
                        name: ::std::string::String::from(#vname),
                        shape: #sdk::VariantShape::#shape,
                        fields: ::std::vec![ #( #sdk::__private::field_def::<#types>(space, #names), )* ],
                    }
                });
                let locals: Vec<_> = (0..types.len())
                    .map(|i| format_ident!("__f{}", i))
                    .collect();
                match &v.fields {
                    syn::Fields::Unit => {
                        encode_arms.push(quote!(Self::#vident => out.push(#tag),));
                        decode_arms
                            .push(quote!(#tag => ::core::result::Result::Ok(Self::#vident),));
                    }
                    syn::Fields::Unnamed(_) => {
                        encode_arms.push(quote! {
                            Self::#vident( #( #locals ),* ) => {
                                out.push(#tag);
                                #( #sdk::Column::encode(#locals, out); )*
                            }
                        });
                        decode_arms.push(quote! {
                            #tag => ::core::result::Result::Ok(Self::#vident( #( <#types as #sdk::Column>::decode(r)? ),* )),
                        });
                    }
                    syn::Fields::Named(f) => {
                        let fidents: Vec<_> = f.named.iter().map(|f| f.ident.clone()).collect();
                        encode_arms.push(quote! {
                            Self::#vident { #( #fidents: #locals ),* } => {
                                out.push(#tag);
                                #( #sdk::Column::encode(#locals, out); )*
                            }
                        });
                        decode_arms.push(quote! {
                            #tag => ::core::result::Result::Ok(Self::#vident { #( #fidents: <#types as #sdk::Column>::decode(r)?, )* }),
                        });
                    }
                }
            }
            (
                quote! {
                    #sdk::TypeDef::Sum(#sdk::SumDef {
                        name: ::std::string::String::from(#name),
                        variants: ::std::vec![ #( #variant_defs, )* ],
                    })
                },
                quote!( match self { #( #encode_arms )* } ),
                quote! {
                    match #sdk::__private::decode_tag(r)? {
                        #( #decode_arms )*
                        _ => ::core::result::Result::Err(#sdk::__private::invalid_variant()),
                    }
                },
            )
        }
        syn::Data::Union(_) => {
            return Err(Error::new(
                ident.span(),
                "#[derive(Type)] does not support unions",
            ));
        }
    };
    Ok(quote! {
        impl #sdk::Column for #ident {
            fn type_index(space: &mut #sdk::Typespace) -> u32 {
                space.named::<Self>(|space| #define)
            }
            #[inline]
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                #encode
            }
            #[inline]
            fn decode(r: &mut #sdk::Reader<'_>) -> ::core::result::Result<Self, #sdk::DecodeError> {
                #decode
            }
        }
    })
}

/// Marks a struct as a table. Only meaningful inside `#[module]`.
#[proc_macro_attribute]
pub fn table(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_module("table", item)
}

/// Marks a function as a reducer. Only meaningful inside `#[module]`.
#[proc_macro_attribute]
pub fn reducer(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_module("reducer", item)
}

fn outside_module(what: &str, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let msg =
        format!("#[{what}] must appear inside a `#[interstice_sdk::module] mod ... {{ }}` block");
    quote!(compile_error!(#msg); #item).into()
}

fn is_attr(attr: &Attribute, name: &str) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == name)
}

fn take_attr(attrs: &mut Vec<Attribute>, name: &str) -> Option<Attribute> {
    let pos = attrs.iter().position(|a| is_attr(a, name))?;
    Some(attrs.remove(pos))
}

struct ColumnInfo {
    ident: Ident,
    ty: Type,
    /// `#[default(expr)]`: the value rows get when a later version adds
    /// this column.
    default: Option<syn::Expr>,
}

struct IndexInfo {
    name: String,
    /// The accessor on the table handle: `by_<field>` for a field's index,
    /// the index's name for one the table attribute declares.
    method: Ident,
    columns: Vec<usize>,
    unique: bool,
    hash: bool,
}

/// An index the table attribute declares:
/// `index(name = by_game_turn, [unique,] btree(columns = [game, turn]))`.
struct TableIndex {
    name: Ident,
    columns: Vec<Ident>,
    unique: bool,
    hash: bool,
}

/// The most columns an index's typed handle takes (the host allows more).
const INDEX_COLUMNS_MAX: usize = 4;

fn parse_table_index(meta: syn::meta::ParseNestedMeta<'_>) -> Result<TableIndex> {
    let span = meta.path.span();
    let mut name = None;
    let mut unique = false;
    let mut kind = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("name") {
            name = Some(inner.value()?.parse::<Ident>()?);
            Ok(())
        } else if inner.path.is_ident("unique") {
            unique = true;
            Ok(())
        } else if inner.path.is_ident("btree") || inner.path.is_ident("hash") {
            let hash = inner.path.is_ident("hash");
            let mut columns = Vec::new();
            inner.parse_nested_meta(|c| {
                if !c.path.is_ident("columns") {
                    return Err(c.error("expected `columns = [field, ...]`"));
                }
                let value = c.value()?;
                let list;
                syn::bracketed!(list in value);
                let idents = list.parse_terminated(Ident::parse, syn::Token![,])?;
                columns.extend(idents);
                Ok(())
            })?;
            kind = Some((hash, columns));
            Ok(())
        } else {
            Err(inner.error("expected `name = ...`, `unique`, `btree(columns = [...])` or `hash(columns = [...])`"))
        }
    })?;
    let Some(name) = name else {
        return Err(Error::new(span, "an index needs `name = ...`"));
    };
    let Some((hash, columns)) = kind else {
        return Err(Error::new(
            span,
            "an index needs `btree(columns = [...])` or `hash(columns = [...])`",
        ));
    };
    Ok(TableIndex {
        name,
        columns,
        unique,
        hash,
    })
}

/// Resolves the columns a table-level index names.
fn table_index_info(index: TableIndex, fields: &[Ident]) -> Result<IndexInfo> {
    if index.columns.is_empty() || index.columns.len() > INDEX_COLUMNS_MAX {
        return Err(Error::new(
            index.name.span(),
            format!("an index has 1 to {INDEX_COLUMNS_MAX} columns"),
        ));
    }
    let columns = index
        .columns
        .iter()
        .map(|c| {
            fields
                .iter()
                .position(|f| f == c)
                .ok_or_else(|| Error::new(c.span(), format!("the table has no field `{c}`")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(IndexInfo {
        name: index.name.to_string(),
        method: index.name,
        columns,
        unique: index.unique,
        hash: index.hash,
    })
}

/// `#[index(btree)]` or `#[index(hash)]`: whether it is a hash index.
fn parse_field_index(a: &Attribute) -> Result<bool> {
    let mut kind = None;
    a.parse_nested_meta(|meta| {
        if meta.path.is_ident("btree") {
            kind = Some(false);
            Ok(())
        } else if meta.path.is_ident("hash") {
            kind = Some(true);
            Ok(())
        } else {
            Err(meta.error("an index is `btree` or `hash`"))
        }
    })?;
    kind.ok_or_else(|| Error::new(a.span(), "write #[index(btree)] or #[index(hash)]"))
}

struct TableInfo {
    struct_ident: Ident,
    name: String,
    ephemeral: bool,
    public: bool,
    /// `scheduled(reducer)`: the reducer each row runs when due.
    scheduled: Option<Ident>,
    columns: Vec<ColumnInfo>,
    primary_key: usize,
    auto_inc: Option<usize>,
    indexes: Vec<IndexInfo>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Normal,
    Init,
    Migrate,
    ClientConnected,
    ClientDisconnected,
}

struct ReducerInfo {
    fn_ident: Ident,
    kind: Lifecycle,
    params: Vec<(String, Type)>,
}

fn expand_module(mut module: ItemMod) -> Result<TokenStream2> {
    let Some((_, items)) = module.content.as_mut() else {
        return Err(Error::new(
            module.span(),
            "#[module] needs an inline module: `mod name { ... }`",
        ));
    };
    let mut tables = Vec::new();
    let mut reducers = Vec::new();
    for item in items.iter_mut() {
        match item {
            Item::Struct(s) => {
                if let Some(attr) = take_attr(&mut s.attrs, "table") {
                    tables.push(parse_table(&attr, s)?);
                }
            }
            Item::Fn(f) => {
                if let Some(attr) = take_attr(&mut f.attrs, "reducer") {
                    reducers.push(parse_reducer(&attr, f)?);
                }
            }
            _ => {}
        }
    }
    for t in &tables {
        if let Some(r) = &t.scheduled
            && !reducers.iter().any(|x| x.fn_ident == *r)
        {
            return Err(Error::new(
                r.span(),
                format!("the module has no #[reducer] named `{r}`"),
            ));
        }
    }
    let generated = generate(&tables, &reducers);
    items.push(Item::Verbatim(generated));
    Ok(quote!(#module))
}

fn parse_table(attr: &Attribute, s: &mut ItemStruct) -> Result<TableInfo> {
    let mut name = None;
    let mut ephemeral = false;
    let mut public = false;
    let mut scheduled = None;
    let mut table_indexes = Vec::new();
    if !matches!(attr.meta, syn::Meta::Path(_)) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("index") {
                table_indexes.push(parse_table_index(meta)?);
                Ok(())
            } else if meta.path.is_ident("name") {
                let value = meta.value()?;
                name = Some(if value.peek(LitStr) {
                    value.parse::<LitStr>()?.value()
                } else {
                    value.parse::<Ident>()?.to_string()
                });
                Ok(())
            } else if meta.path.is_ident("ephemeral") {
                ephemeral = true;
                Ok(())
            } else if meta.path.is_ident("public") {
                public = true;
                Ok(())
            } else if meta.path.is_ident("scheduled") {
                let inner;
                syn::parenthesized!(inner in meta.input);
                scheduled = Some(inner.parse::<Ident>()?);
                Ok(())
            } else {
                Err(meta.error(
                    "expected `name = ...`, `public`, `ephemeral`, `scheduled(reducer)` or `index(...)`",
                ))
            }
        })?;
    }
    let syn::Fields::Named(fields) = &mut s.fields else {
        return Err(Error::new(
            s.span(),
            "a table must be a struct with named fields",
        ));
    };
    let mut columns = Vec::new();
    let mut primary_key = None;
    let mut auto_inc = None;
    let mut indexes = Vec::new();
    for (i, field) in fields.named.iter_mut().enumerate() {
        let ident = field.ident.clone().expect("named field");
        if let Some(a) = take_attr(&mut field.attrs, "primary_key")
            && primary_key.replace(i).is_some()
        {
            return Err(Error::new(
                a.span(),
                "a table has exactly one #[primary_key]",
            ));
        }
        if let Some(a) = take_attr(&mut field.attrs, "auto_inc")
            && auto_inc.replace(i).is_some()
        {
            return Err(Error::new(a.span(), "a table has at most one #[auto_inc]"));
        }
        let unique = take_attr(&mut field.attrs, "unique").is_some();
        let hash = match take_attr(&mut field.attrs, "index") {
            Some(a) => Some(parse_field_index(&a)?),
            None => None,
        };
        if unique || hash.is_some() {
            indexes.push(IndexInfo {
                name: ident.to_string(),
                method: format_ident!("by_{}", ident),
                columns: vec![i],
                unique,
                hash: hash.unwrap_or(false),
            });
        }
        let default = match take_attr(&mut field.attrs, "default") {
            Some(a) => Some(a.parse_args::<syn::Expr>()?),
            None => None,
        };
        columns.push(ColumnInfo {
            ident,
            ty: field.ty.clone(),
            default,
        });
    }
    let Some(primary_key) = primary_key else {
        return Err(Error::new(
            s.ident.span(),
            "a table needs one field marked #[primary_key]",
        ));
    };
    // A unique index on the primary key is the primary key itself.
    indexes.retain(|i| i.columns != [primary_key]);
    let field_idents: Vec<Ident> = columns.iter().map(|c| c.ident.clone()).collect();
    for index in table_indexes {
        indexes.push(table_index_info(index, &field_idents)?);
    }
    Ok(TableInfo {
        struct_ident: s.ident.clone(),
        name: name.unwrap_or_else(|| snake_case(&s.ident.to_string())),
        ephemeral,
        public,
        scheduled,
        columns,
        primary_key,
        auto_inc,
        indexes,
    })
}

fn parse_reducer(attr: &Attribute, f: &ItemFn) -> Result<ReducerInfo> {
    let mut kind = Lifecycle::Normal;
    if !matches!(attr.meta, syn::Meta::Path(_)) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("init") {
                kind = Lifecycle::Init;
                Ok(())
            } else if meta.path.is_ident("migrate") {
                kind = Lifecycle::Migrate;
                Ok(())
            } else if meta.path.is_ident("client_connected") {
                kind = Lifecycle::ClientConnected;
                Ok(())
            } else if meta.path.is_ident("client_disconnected") {
                kind = Lifecycle::ClientDisconnected;
                Ok(())
            } else {
                Err(meta.error(
                    "expected `init`, `migrate`, `client_connected` or `client_disconnected`",
                ))
            }
        })?;
    }
    let mut inputs = f.sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Typed(t)) if matches!(&*t.ty, Type::Reference(_)) => {}
        _ => {
            return Err(Error::new(
                f.sig.span(),
                "a reducer's first parameter is `ctx: &ReducerContext`",
            ));
        }
    }
    let mut params = Vec::new();
    for input in inputs {
        let FnArg::Typed(t) = input else {
            return Err(Error::new(input.span(), "reducers are free functions"));
        };
        let name = match &*t.pat {
            Pat::Ident(p) => p.ident.to_string().trim_start_matches('_').to_string(),
            other => {
                return Err(Error::new(
                    other.span(),
                    "use a plain name for each parameter",
                ));
            }
        };
        params.push((name, (*t.ty).clone()));
    }
    if let ReturnType::Type(_, ty) = &f.sig.output
        && matches!(**ty, Type::ImplTrait(_))
    {
        return Err(Error::new(ty.span(), "return `()` or `Result<(), E>`"));
    }
    Ok(ReducerInfo {
        fn_ident: f.sig.ident.clone(),
        kind,
        params,
    })
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn generate(tables: &[TableInfo], reducers: &[ReducerInfo]) -> TokenStream2 {
    let sdk = quote!(::interstice_sdk);
    let mut out = TokenStream2::new();
    let mut table_defs = Vec::new();
    let mut accessors = Vec::new();
    let mut accessor_impls = Vec::new();

    for (table_id, t) in tables.iter().enumerate() {
        let table_id = table_id as u32;
        let ident = &t.struct_ident;
        let name = &t.name;
        let field_idents: Vec<_> = t.columns.iter().map(|c| &c.ident).collect();
        let field_types: Vec<_> = t.columns.iter().map(|c| &c.ty).collect();
        let pk_ident = &t.columns[t.primary_key].ident;
        let pk_ty = &t.columns[t.primary_key].ty;
        let pk_pos = t.primary_key as u32;
        let has_auto_inc = t.auto_inc.is_some();
        let auto_inc = match t.auto_inc {
            Some(c) => {
                let c = c as u32;
                quote!(::core::option::Option::Some(#c))
            }
            None => quote!(::core::option::Option::None),
        };
        let ephemeral = t.ephemeral;
        let public = t.public;
        let scheduled = match &t.scheduled {
            Some(r) => {
                let r = r.to_string();
                quote!(::core::option::Option::Some(::std::string::String::from(#r)))
            }
            None => quote!(::core::option::Option::None),
        };
        if t.scheduled.is_some() {
            // The scheduled reducer takes the row: the struct is also a type.
            let struct_name = ident.to_string();
            let names: Vec<String> = field_idents.iter().map(|i| i.to_string()).collect();
            out.extend(quote! {
                impl #sdk::Column for #ident {
                    fn type_index(space: &mut #sdk::Typespace) -> u32 {
                        space.named::<Self>(|space| #sdk::TypeDef::Product(#sdk::ProductDef {
                            name: ::std::string::String::from(#struct_name),
                            fields: ::std::vec![ #( #sdk::__private::field_def::<#field_types>(space, #names), )* ],
                        }))
                    }
                    #[inline]
                    fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                        #( #sdk::Column::encode(&self.#field_idents, out); )*
                    }
                    #[inline]
                    fn decode(r: &mut #sdk::Reader<'_>) -> ::core::result::Result<Self, #sdk::DecodeError> {
                        ::core::result::Result::Ok(Self {
                            #( #field_idents: <#field_types as #sdk::Column>::decode(r)?, )*
                        })
                    }
                }
            });
        }
        let column_defs = t.columns.iter().map(|c| {
            let name = c.ident.to_string();
            let ty = &c.ty;
            match &c.default {
                Some(expr) => quote! {
                    #sdk::__private::column_def_with_default::<#ty>(&mut __ts, #name, #expr)
                },
                None => quote! {
                    #sdk::__private::column_def::<#ty>(&mut __ts, #name)
                },
            }
        });
        let index_defs = t.indexes.iter().map(|i| {
            let cols = i.columns.iter().map(|c| *c as u32);
            let name = &i.name;
            let unique = i.unique;
            let hash = i.hash;
            quote!(#sdk::__private::index_def(#name, &[#(#cols),*], #unique, #hash))
        });
        out.extend(quote! {
            impl #sdk::Table for #ident {
                const TABLE_ID: u32 = #table_id;
                const NAME: &'static str = #name;
                const HAS_AUTO_INC: bool = #has_auto_inc;
                type PrimaryKey = #pk_ty;
                #[inline]
                fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                    #( #sdk::Column::encode(&self.#field_idents, out); )*
                }
                #[inline]
                fn decode(r: &mut #sdk::Reader<'_>) -> ::core::result::Result<Self, #sdk::DecodeError> {
                    ::core::result::Result::Ok(Self {
                        #( #field_idents: <#field_types as #sdk::Column>::decode(r)?, )*
                    })
                }
                #[inline]
                fn primary_key(&self) -> &Self::PrimaryKey {
                    &self.#pk_ident
                }
            }
        });
        table_defs.push(quote! {
            #sdk::TableDef {
                name: ::std::string::String::from(#name),
                columns: ::std::vec![ #( #column_defs, )* ],
                primary_key: #pk_pos,
                auto_inc: #auto_inc,
                indexes: ::std::vec![ #( #index_defs, )* ],
                ephemeral: #ephemeral,
                public: #public,
                scheduled: #scheduled,
            }
        });
        let accessor = format_ident!("{}", t.name.replace('-', "_"));
        accessors.push(quote!(fn #accessor(&self) -> #sdk::TableHandle<#ident>;));
        accessor_impls.push(quote! {
            #[inline]
            fn #accessor(&self) -> #sdk::TableHandle<#ident> { #sdk::TableHandle::__new() }
        });
        if !t.indexes.is_empty() {
            let trait_ident = format_ident!("__{}Indexes", ident);
            let mut sigs = Vec::new();
            let mut impls = Vec::new();
            for (i, index) in t.indexes.iter().enumerate() {
                let index_id = i as u32 + 1;
                let method = &index.method;
                let handle = format_ident!(
                    "{}{}{}Index",
                    if index.unique { "Unique" } else { "" },
                    if index.columns.len() > 1 {
                        "Composite"
                    } else {
                        ""
                    },
                    match (index.hash, index.unique || index.columns.len() > 1) {
                        (true, _) => "Hash",
                        (false, false) => "BTree",
                        (false, true) => "",
                    }
                );
                let key_types = index.columns.iter().map(|c| &t.columns[*c].ty);
                let key = if index.columns.len() == 1 {
                    let ty = &t.columns[index.columns[0]].ty;
                    quote!(#ty)
                } else {
                    quote!((#(#key_types,)*))
                };
                let kind = quote!(#sdk::#handle<#ident, #key>);
                sigs.push(quote!(fn #method(&self) -> #kind;));
                impls.push(quote!(#[inline] fn #method(&self) -> #kind { #sdk::#handle::__new(#index_id) }));
            }
            out.extend(quote! {
                #[doc(hidden)]
                pub trait #trait_ident { #( #sigs )* }
                impl #trait_ident for #sdk::TableHandle<#ident> { #( #impls )* }
            });
        }
    }

    out.extend(quote! {
        #[doc(hidden)]
        pub trait __ModuleTables { #( #accessors )* }
        impl __ModuleTables for #sdk::Db { #( #accessor_impls )* }
    });

    let mut reducer_defs = Vec::new();
    let mut arms = Vec::new();
    for (reducer_id, r) in reducers.iter().enumerate() {
        let reducer_id = reducer_id as u32;
        let fn_ident = &r.fn_ident;
        let name = fn_ident.to_string();
        let kind = match r.kind {
            Lifecycle::Init => quote!(#sdk::ReducerKind::Init),
            Lifecycle::Migrate => quote!(#sdk::ReducerKind::Migrate),
            Lifecycle::Normal => quote!(#sdk::ReducerKind::Normal),
            Lifecycle::ClientConnected => quote!(#sdk::ReducerKind::ClientConnected),
            Lifecycle::ClientDisconnected => quote!(#sdk::ReducerKind::ClientDisconnected),
        };
        let param_names: Vec<_> = r.params.iter().map(|(n, _)| n.clone()).collect();
        let param_types: Vec<_> = r.params.iter().map(|(_, t)| t.clone()).collect();
        let locals: Vec<_> = (0..r.params.len())
            .map(|i| format_ident!("__arg{}", i))
            .collect();
        reducer_defs.push(quote! {
            #sdk::ReducerDef {
                name: ::std::string::String::from(#name),
                params: ::std::vec![
                    #( #sdk::__private::param_def::<#param_types>(&mut __ts, #param_names), )*
                ],
                kind: #kind,
            }
        });
        arms.push(quote! {
            #reducer_id => {
                let mut __r = #sdk::Reader::new(&__args);
                #( let #locals: #param_types = #sdk::__private::decode_arg(&mut __r, #param_names)?; )*
                #sdk::__private::finish_args(&__r)?;
                #sdk::__private::IntoReducerResult::into_reducer_result(#fn_ident(&__ctx #(, #locals)*))
            }
        });
    }

    out.extend(quote! {
        #[doc(hidden)]
        pub struct __InterstceModule;

        impl #sdk::bindings::Guest for __InterstceModule {
            fn describe() -> #sdk::ModuleDef {
                let mut __ts = #sdk::Typespace::new();
                let tables = ::std::vec![ #( #table_defs, )* ];
                let reducers = ::std::vec![ #( #reducer_defs, )* ];
                #sdk::ModuleDef {
                    abi_version: #sdk::ABI_VERSION,
                    typespace: __ts.into_types(),
                    tables,
                    reducers,
                }
            }

            fn call_reducer(
                __ctx: #sdk::bindings::interstice::module::types::ReducerContext,
                __reducer: u32,
                __args: ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                #sdk::__private::enter();
                let __ctx = #sdk::ReducerContext::__new(__ctx);
                match __reducer {
                    #( #arms )*
                    other => ::core::result::Result::Err(::std::format!("no reducer with id {other}")),
                }
            }
        }

        #sdk::bindings::__export_module!(__InterstceModule);
    });
    out
}
