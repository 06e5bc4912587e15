//! Typed handles on a table's secondary indexes, as `#[table]` declares
//! them: `ctx.db.moves().by_game_turn()`.
//!
//! | declared as | handle | what it does |
//! |---|---|---|
//! | `#[unique]` | [`UniqueIndex`] | `find`, `delete`, `range` |
//! | `#[index(btree)]` | [`BTreeIndex`] | `filter` (one value), `range` |
//! | `#[index(hash)]` | [`HashIndex`] | `filter` (one value) |
//! | `#[unique] #[index(hash)]` | [`UniqueHashIndex`] | `find`, `delete` |
//! | `index(name = n, btree(columns = [a, b]))` | [`CompositeIndex`] | `filter` (a prefix, a range on its last column) |
//! | the same with `unique` | [`UniqueCompositeIndex`] | `find`, `delete`, `filter` |
//! | `index(name = n, hash(columns = [a, b]))` | [`CompositeHashIndex`] | `filter` (the whole key) |
//! | the same with `unique` | [`UniqueCompositeHashIndex`] | `find`, `delete` |
//!
//! A B-tree index keeps its keys in order (`docs/row-encoding.md` gives the
//! order of every type) and answers ranges; a hash index answers whole keys
//! only, and costs less per write and per lookup.

use std::marker::PhantomData;
use std::ops::{
    Bound, Range, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive,
};

use crate::{Column, RowIter, Table, TableHandle, encode_bound, encode_key, host, internal};

/// The bounds of a scan, as encoded keys or key prefixes.
#[doc(hidden)]
pub type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A whole key of a composite index over columns of types `K`: a tuple of
/// references, `(&game, &turn)`.
pub trait IndexKey<K> {
    #[doc(hidden)]
    fn encode_key(&self, out: &mut Vec<u8>);
}

/// What [`CompositeIndex::filter`] takes for an index over columns of types
/// `K = (A, B, ...)`: a value of the first column (`&a`), of the first
/// columns (`(&a, &b)`, up to the whole key), or values of the first columns
/// followed by a range over the next one (`(&a, 3..7)`, `(&a, ..=9)`, or
/// `2..5` for a range over the first).
pub trait IndexPrefix<K> {
    #[doc(hidden)]
    fn bounds(&self) -> KeyBounds;
}

/// Bounds of a range over the column after `prefix` (the encoded values of
/// the columns before it). An open end stops at the prefix: `(&a, 3..)` ends
/// with the last key that begins with `a`.
fn range_bounds<C: Column>(prefix: Vec<u8>, range: &impl RangeBounds<C>) -> KeyBounds {
    let open = |prefix: &Vec<u8>| {
        if prefix.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(prefix.clone())
        }
    };
    let with = |value: &C| {
        let mut key = prefix.clone();
        value.encode(&mut key);
        key
    };
    let lower = match range.start_bound() {
        Bound::Included(v) => Bound::Included(with(v)),
        Bound::Excluded(v) => Bound::Excluded(with(v)),
        Bound::Unbounded => open(&prefix),
    };
    let upper = match range.end_bound() {
        Bound::Included(v) => Bound::Included(with(v)),
        Bound::Excluded(v) => Bound::Excluded(with(v)),
        Bound::Unbounded => open(&prefix),
    };
    (lower, upper)
}

fn point(key: Vec<u8>) -> KeyBounds {
    (Bound::Included(key.clone()), Bound::Included(key))
}

macro_rules! whole_key {
    ($($t:ident $v:ident),+) => {
        impl<'a, $($t: Column),+> IndexKey<($($t,)+)> for ($(&'a $t,)+) {
            fn encode_key(&self, out: &mut Vec<u8>) {
                let ($($v,)+) = *self;
                $( $v.encode(out); )+
            }
        }
    };
}

whole_key!(A a, B b);
whole_key!(A a, B b, C c);
whole_key!(A a, B b, C c, D d);

/// `IndexPrefix` for the values of the first columns of a key `[$k]`.
macro_rules! point_prefix {
    ([$($k:ident),+] $p:ident $pv:ident) => {
        impl<'a, $($k: Column),+> IndexPrefix<($($k,)+)> for &'a $p {
            fn bounds(&self) -> KeyBounds {
                let mut key = Vec::new();
                self.encode(&mut key);
                point(key)
            }
        }
    };
    ([$($k:ident),+] $($p:ident $pv:ident),+) => {
        impl<'a, $($k: Column),+> IndexPrefix<($($k,)+)> for ($(&'a $p,)+) {
            fn bounds(&self) -> KeyBounds {
                let ($($pv,)+) = *self;
                let mut key = Vec::new();
                $( $pv.encode(&mut key); )+
                point(key)
            }
        }
    };
}

/// `IndexPrefix` for ranges over column `$r` of a key `[$k]`, after the
/// values of the columns before it.
macro_rules! range_prefix {
    ([$($k:ident),+] [$($p:ident $pv:ident),*] $r:ident) => {
        range_prefix!(@one [$($k),+] [$($p $pv),*] Range<$r>);
        range_prefix!(@one [$($k),+] [$($p $pv),*] RangeInclusive<$r>);
        range_prefix!(@one [$($k),+] [$($p $pv),*] RangeFrom<$r>);
        range_prefix!(@one [$($k),+] [$($p $pv),*] RangeTo<$r>);
        range_prefix!(@one [$($k),+] [$($p $pv),*] RangeToInclusive<$r>);
        range_prefix!(@one [$($k),+] [$($p $pv),*] (Bound<$r>, Bound<$r>));
    };
    (@one [$($k:ident),+] [] $range:ty) => {
        impl<$($k: Column),+> IndexPrefix<($($k,)+)> for $range {
            fn bounds(&self) -> KeyBounds {
                range_bounds(Vec::new(), self)
            }
        }
    };
    (@one [$($k:ident),+] [$($p:ident $pv:ident),+] $range:ty) => {
        impl<'a, $($k: Column),+> IndexPrefix<($($k,)+)> for ($(&'a $p,)+ $range) {
            fn bounds(&self) -> KeyBounds {
                let ($($pv,)+ range) = self;
                let mut prefix = Vec::new();
                $( $pv.encode(&mut prefix); )+
                range_bounds(prefix, range)
            }
        }
    };
}

point_prefix!([A, B] A a);
point_prefix!([A, B] A a, B b);
range_prefix!([A, B] [] A);
range_prefix!([A, B] [A a] B);

point_prefix!([A, B, C] A a);
point_prefix!([A, B, C] A a, B b);
point_prefix!([A, B, C] A a, B b, C c);
range_prefix!([A, B, C] [] A);
range_prefix!([A, B, C] [A a] B);
range_prefix!([A, B, C] [A a, B b] C);

point_prefix!([A, B, C, D] A a);
point_prefix!([A, B, C, D] A a, B b);
point_prefix!([A, B, C, D] A a, B b, C c);
point_prefix!([A, B, C, D] A a, B b, C c, D d);
range_prefix!([A, B, C, D] [] A);
range_prefix!([A, B, C, D] [A a] B);
range_prefix!([A, B, C, D] [A a, B b] C);
range_prefix!([A, B, C, D] [A a, B b, C c] D);

/// Every row: `filter(..)`.
impl<K> IndexPrefix<K> for RangeFull {
    fn bounds(&self) -> KeyBounds {
        (Bound::Unbounded, Bound::Unbounded)
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<T: Table, K> {
            index_id: u32,
            _marker: PhantomData<fn() -> (T, K)>,
        }

        impl<T: Table, K> $name<T, K> {
            #[doc(hidden)]
            pub fn __new(index_id: u32) -> Self {
                $name {
                    index_id,
                    _marker: PhantomData,
                }
            }

            #[allow(dead_code)]
            fn scan(&self, (lower, upper): KeyBounds) -> RowIter<T> {
                RowIter::open(self.index_id, lower, upper)
            }

            #[allow(dead_code)]
            fn lookup(&self, key: &[u8]) -> Option<T> {
                internal(host::lookup_unique(T::TABLE_ID, self.index_id, key))
                    .map(|b| crate::decode_row(&b))
            }

            /// Deletes the row a lookup found; `false` if there was none.
            #[allow(dead_code)]
            fn delete_found(row: Option<T>) -> bool {
                match row {
                    Some(row) => TableHandle::<T>::__new().delete(row.primary_key()),
                    None => false,
                }
            }
        }
    };
}

handle!(
    /// A unique B-tree index over one column: at most one row per value.
    UniqueIndex
);
handle!(
    /// A non-unique B-tree index over one column.
    BTreeIndex
);
handle!(
    /// A non-unique hash index over one column: point lookups only.
    HashIndex
);
handle!(
    /// A unique hash index over one column: at most one row per value.
    UniqueHashIndex
);
handle!(
    /// A non-unique B-tree index over several columns, `K = (A, B, ...)`.
    CompositeIndex
);
handle!(
    /// A unique B-tree index over several columns: at most one row per key.
    UniqueCompositeIndex
);
handle!(
    /// A non-unique hash index over several columns: whole keys only.
    CompositeHashIndex
);
handle!(
    /// A unique hash index over several columns: at most one row per key.
    UniqueCompositeHashIndex
);

fn range_of<K: Column>(range: &impl RangeBounds<K>) -> KeyBounds {
    (
        encode_bound(range.start_bound()),
        encode_bound(range.end_bound()),
    )
}

fn whole<K>(key: impl IndexKey<K>) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_key(&mut out);
    out
}

impl<T: Table, K: Column> UniqueIndex<T, K> {
    /// The row holding `key`.
    pub fn find(&self, key: &K) -> Option<T> {
        self.lookup(&encode_key(key))
    }

    /// Deletes the row holding `key`; `false` if there was none.
    pub fn delete(&self, key: &K) -> bool {
        Self::delete_found(self.find(key))
    }

    /// Rows whose indexed value lies in `range`, in index order.
    pub fn range(&self, range: impl RangeBounds<K>) -> RowIter<T> {
        self.scan(range_of(&range))
    }
}

impl<T: Table, K: Column> BTreeIndex<T, K> {
    /// Rows whose indexed value equals `key`, in primary-key order.
    pub fn filter(&self, key: &K) -> RowIter<T> {
        self.scan(point(encode_key(key)))
    }

    /// Rows whose indexed value lies in `range`, in index order.
    pub fn range(&self, range: impl RangeBounds<K>) -> RowIter<T> {
        self.scan(range_of(&range))
    }
}

impl<T: Table, K: Column> HashIndex<T, K> {
    /// Rows whose indexed value equals `key`, in primary-key order.
    pub fn filter(&self, key: &K) -> RowIter<T> {
        self.scan(point(encode_key(key)))
    }
}

impl<T: Table, K: Column> UniqueHashIndex<T, K> {
    /// The row holding `key`.
    pub fn find(&self, key: &K) -> Option<T> {
        self.lookup(&encode_key(key))
    }

    /// Deletes the row holding `key`; `false` if there was none.
    pub fn delete(&self, key: &K) -> bool {
        Self::delete_found(self.find(key))
    }
}

impl<T: Table, K> CompositeIndex<T, K> {
    /// Rows whose key begins with the given values, or with the given
    /// values and then a value in the given range, in key order:
    /// `filter((&game, &turn))`, `filter(&game)`, `filter((&game, 3..7))`.
    pub fn filter(&self, prefix: impl IndexPrefix<K>) -> RowIter<T> {
        self.scan(prefix.bounds())
    }
}

impl<T: Table, K> UniqueCompositeIndex<T, K> {
    /// The row holding the whole key `(&a, &b, ...)`.
    pub fn find(&self, key: impl IndexKey<K>) -> Option<T> {
        self.lookup(&whole(key))
    }

    /// Deletes the row holding the whole key; `false` if there was none.
    pub fn delete(&self, key: impl IndexKey<K>) -> bool {
        Self::delete_found(self.find(key))
    }

    /// Rows whose key begins with a prefix, as [`CompositeIndex::filter`].
    pub fn filter(&self, prefix: impl IndexPrefix<K>) -> RowIter<T> {
        self.scan(prefix.bounds())
    }
}

impl<T: Table, K> CompositeHashIndex<T, K> {
    /// Rows holding the whole key `(&a, &b, ...)`, in primary-key order.
    pub fn filter(&self, key: impl IndexKey<K>) -> RowIter<T> {
        self.scan(point(whole(key)))
    }
}

impl<T: Table, K> UniqueCompositeHashIndex<T, K> {
    /// The row holding the whole key `(&a, &b, ...)`.
    pub fn find(&self, key: impl IndexKey<K>) -> Option<T> {
        self.lookup(&whole(key))
    }

    /// Deletes the row holding the whole key; `false` if there was none.
    pub fn delete(&self, key: impl IndexKey<K>) -> bool {
        Self::delete_found(self.find(key))
    }
}
