//! The module's typespace as `describe` hands it to the host: every type a
//! column or parameter uses, each written once, referring to the others by
//! index.

use std::any::TypeId;

use crate::{ScalarType, TypeDef};

/// Types collected while a module describes itself.
#[derive(Default)]
pub struct Typespace {
    types: Vec<TypeDef>,
    /// Named types (structs, enums) already added, by Rust type.
    named: Vec<(TypeId, u32)>,
}

impl Typespace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry (or finds an equal one) and returns its index.
    pub fn add(&mut self, def: TypeDef) -> u32 {
        if let Some(i) = self.types.iter().position(|t| same(t, &def)) {
            return i as u32;
        }
        self.types.push(def);
        (self.types.len() - 1) as u32
    }

    pub fn scalar(&mut self, s: ScalarType) -> u32 {
        self.add(TypeDef::Scalar(s))
    }

    /// The index of the struct or enum `T`, adding it with `define` the first
    /// time. The index is reserved before `define` runs, so a type that
    /// contains itself refers to its own index (which the host refuses).
    pub fn named<T: 'static>(&mut self, define: impl FnOnce(&mut Typespace) -> TypeDef) -> u32 {
        let id = TypeId::of::<T>();
        if let Some((_, index)) = self.named.iter().find(|(t, _)| *t == id) {
            return *index;
        }
        let index = self.types.len() as u32;
        self.types.push(TypeDef::Scalar(ScalarType::Bool));
        self.named.push((id, index));
        let def = define(self);
        self.types[index as usize] = def;
        index
    }

    pub fn into_types(self) -> Vec<TypeDef> {
        self.types
    }
}

/// Whether two unnamed entries are the same type (named ones are matched by
/// Rust type in [`Typespace::named`]).
fn same(a: &TypeDef, b: &TypeDef) -> bool {
    match (a, b) {
        (TypeDef::Scalar(x), TypeDef::Scalar(y)) => x == y,
        (TypeDef::Option(x), TypeDef::Option(y)) | (TypeDef::Vec(x), TypeDef::Vec(y)) => x == y,
        _ => false,
    }
}
