//! The types with a meaning of their own: who (an [`Identity`]), when (a
//! [`Timestamp`]) and how long (a [`Duration`]).

use std::fmt;
use std::ops::{Add, Sub};

use crate::{
    Column, DecodeError, FieldDef, Reader, ScalarType, SumDef, TypeDef, Typespace, VariantDef,
    VariantShape,
};

/// 32 bytes naming a caller; shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Identity(pub [u8; 32]);

impl Identity {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Identity(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The identity written as 64 hex digits, if `hex` is one.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Identity(out))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl Column for Identity {
    fn type_index(space: &mut Typespace) -> u32 {
        space.scalar(ScalarType::Identity)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Identity(r.take::<32>()?))
    }
}

/// A point in time: microseconds since the Unix epoch (1970-01-01T00:00:00Z),
/// signed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The time `d` later, or `None` past the representable range.
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_add(d.0).map(Timestamp)
    }

    /// The time from `earlier` to `self`, or `None` past the range.
    pub fn checked_since(self, earlier: Timestamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration)
    }
}

/// `timestamp + duration`; panics on overflow, as integer addition does in
/// debug builds.
impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.checked_add(d).expect("timestamp overflow")
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.checked_sub(d.0).expect("timestamp overflow"))
    }
}

/// `later - earlier`.
impl Sub for Timestamp {
    type Output = Duration;
    fn sub(self, earlier: Timestamp) -> Duration {
        self.checked_since(earlier).expect("duration overflow")
    }
}

impl Column for Timestamp {
    fn type_index(space: &mut Typespace) -> u32 {
        space.scalar(ScalarType::Timestamp)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Timestamp(i64::from_le_bytes(r.take::<8>()?)))
    }
}

/// A span of time in microseconds, signed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Duration(i64);

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_micros(micros: i64) -> Self {
        Duration(micros)
    }

    /// `millis` milliseconds; saturates at the range of `i64` microseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Duration(millis.saturating_mul(1_000))
    }

    /// `secs` seconds; saturates at the range of `i64` microseconds.
    pub const fn from_secs(secs: i64) -> Self {
        Duration(secs.saturating_mul(1_000_000))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub const fn millis(self) -> i64 {
        self.0 / 1_000
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, other: Duration) -> Duration {
        Duration(self.0.checked_add(other.0).expect("duration overflow"))
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, other: Duration) -> Duration {
        Duration(self.0.checked_sub(other.0).expect("duration overflow"))
    }
}

impl Column for Duration {
    fn type_index(space: &mut Typespace) -> u32 {
        space.scalar(ScalarType::Duration)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Duration(i64::from_le_bytes(r.take::<8>()?)))
    }
}

/// When a row of a schedule table runs its reducer: once at a time, or
/// every so often (the first time one interval after the row is written).
/// A schedule table has a `scheduled_at: ScheduleAt` column.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScheduleAt {
    Time(Timestamp),
    Interval(Duration),
}

impl Column for ScheduleAt {
    fn type_index(space: &mut Typespace) -> u32 {
        space.named::<Self>(|space| {
            let variant = |name: &str, ty: u32| VariantDef {
                name: name.to_string(),
                shape: VariantShape::Tuple,
                fields: vec![FieldDef {
                    name: "0".to_string(),
                    ty,
                }],
            };
            let time = Timestamp::type_index(space);
            let interval = Duration::type_index(space);
            TypeDef::Sum(SumDef {
                name: "ScheduleAt".to_string(),
                variants: vec![variant("Time", time), variant("Interval", interval)],
            })
        })
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ScheduleAt::Time(t) => {
                out.push(0);
                t.encode(out);
            }
            ScheduleAt::Interval(d) => {
                out.push(1);
                d.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.take::<1>()?[0] {
            0 => Ok(ScheduleAt::Time(Timestamp::decode(r)?)),
            1 => Ok(ScheduleAt::Interval(Duration::decode(r)?)),
            _ => Err(DecodeError("invalid variant tag")),
        }
    }
}
