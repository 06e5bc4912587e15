//! Snapshot files: every logged table of every module at one transaction,
//! checksummed and zstd-compressed (`docs/snapshot-format.md`).
//!
//! A snapshot is written once, atomically, and never changed. Reading
//! streams the file: rows go straight into tables, and the result is handed
//! out only after the checksum over the whole body and its length matched.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::schema::ModuleDef;
use crate::table::RowBytes;
use crate::tables::Tables;
use interstice_fs::{Appender, Storage, atomic};

/// First eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"INTSSNAP";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the fixed header before the compressed body.
pub const HEADER_LEN: usize = 64;
/// File name suffix.
pub const EXTENSION: &str = "snap";
/// Compression level: zstd's fast end; snapshots are written while the
/// database serves, and level 1 already shrinks rows several times.
const ZSTD_LEVEL: i32 = 1;
/// Largest module definition a snapshot may carry (JSON).
const DEFINITION_BYTES_MAX: u32 = 16 << 20;
/// Largest module name.
const NAME_BYTES_MAX: u32 = 1024;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The fixed header of a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The last transaction the snapshot includes.
    pub tx_id: u64,
    /// That transaction's logical timestamp.
    pub last_timestamp_micros: i64,
    /// Bytes of the compressed body after the header.
    pub body_len: u64,
    /// Bytes of the body once decompressed.
    pub raw_len: u64,
    /// CRC-32 of the compressed body.
    pub body_crc: u32,
}

impl SnapshotHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 12..16: flags, zero in version 1.
        b[16..24].copy_from_slice(&self.tx_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.last_timestamp_micros.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.raw_len.to_le_bytes());
        b[48..52].copy_from_slice(&self.body_crc.to_le_bytes());
        // 52..60: reserved, zero.
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SnapshotHeader, String> {
        if b.len() < HEADER_LEN {
            return Err(format!(
                "{} bytes is too short for a snapshot header of {HEADER_LEN}",
                b.len()
            ));
        }
        if b[0..8] != MAGIC {
            return Err("not a snapshot file (bad magic)".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let stored = u32_at(60);
        let computed = crc32fast::hash(&b[..60]);
        if stored != computed {
            return Err(format!(
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ));
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "snapshot format version {version}; this build reads version {FORMAT_VERSION}"
            ));
        }
        if u32_at(12) != 0 {
            return Err(format!("unknown flags {:#x}", u32_at(12)));
        }
        Ok(SnapshotHeader {
            tx_id: u64_at(16),
            last_timestamp_micros: u64_at(24) as i64,
            body_len: u64_at(32),
            raw_len: u64_at(40),
            body_crc: u32_at(48),
        })
    }
}

/// One module as a snapshot saves it.
pub struct ModuleImage<'a> {
    pub name: &'a str,
    /// The definition's version: 1 at first publication, one more at each
    /// schema change.
    pub version: u32,
    pub def: &'a ModuleDef,
    pub tables: &'a Tables,
}

/// One module as a snapshot restores it.
pub struct LoadedModule {
    pub name: String,
    pub version: u32,
    pub def: ModuleDef,
    pub tables: Tables,
}

/// A whole snapshot, read and checked.
pub struct Loaded {
    pub header: SnapshotHeader,
    pub modules: Vec<LoadedModule>,
    pub rows: u64,
}

/// The file name of the snapshot at `tx_id`: 20 digits, so names sort in
/// transaction order.
pub fn file_name(tx_id: u64) -> String {
    format!("{tx_id:020}.{EXTENSION}")
}

/// The transaction id a snapshot file name carries.
pub fn parse_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(&format!(".{EXTENSION}"))?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Counts and checksums bytes passing through.
struct Tally<T> {
    inner: T,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl<T> Tally<T> {
    fn new(inner: T) -> Self {
        Tally {
            inner,
            bytes: 0,
            crc: crc32fast::Hasher::new(),
        }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// What writing a snapshot produced.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub header: SnapshotHeader,
    pub rows: u64,
}

/// Writes the snapshot of `modules` at `tx_id` to `path`, atomically.
pub fn write(
    storage: &dyn Storage,
    path: &Path,
    tx_id: u64,
    last_timestamp_micros: i64,
    modules: &[ModuleImage<'_>],
) -> Result<Written, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    atomic::write_atomic_with(storage, path, |file| {
        // The header goes in last, over these zeros, once the body's length
        // and checksum are known.
        file.append(&[0u8; HEADER_LEN])?;
        let (rows, raw_len, body_len, crc) = {
            let compressed = Tally::new(BufWriter::with_capacity(1 << 20, Appender(&mut *file)));
            let encoder = zstd::stream::write::Encoder::new(compressed, ZSTD_LEVEL)?;
            let mut raw = Tally::new(BufWriter::with_capacity(1 << 16, encoder));
            let rows = write_body(&mut raw, modules)?;
            let raw_len = raw.bytes;
            let encoder = raw.inner.into_inner().map_err(|e| e.into_error())?;
            let Tally {
                inner: mut buffered,
                bytes: body_len,
                crc,
            } = encoder.finish()?;
            buffered.flush()?;
            (rows, raw_len, body_len, crc)
        };
        let header = SnapshotHeader {
            tx_id,
            last_timestamp_micros,
            body_len,
            raw_len,
            body_crc: crc.finalize(),
        };
        file.write_at(0, &header.encode())?;
        Ok(Written { header, rows })
    })
    .map_err(io_err)
}

fn put_u32(w: &mut impl Write, v: u32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_u64(w: &mut impl Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    let len = u32::try_from(b.len()).map_err(|_| io::Error::other("field over 4 GiB"))?;
    put_u32(w, len)?;
    w.write_all(b)
}

fn write_body(w: &mut impl Write, modules: &[ModuleImage<'_>]) -> io::Result<u64> {
    put_u32(w, modules.len() as u32)?;
    for m in modules {
        put_bytes(w, m.name.as_bytes())?;
        put_u32(w, m.version)?;
        let def = serde_json::to_vec(m.def).map_err(io::Error::other)?;
        put_bytes(w, &def)?;
    }
    let mut rows = 0u64;
    for m in modules {
        let tables = m.tables.tables();
        put_u32(w, tables.len() as u32)?;
        for (id, t) in tables.iter().enumerate() {
            put_u32(w, id as u32)?;
            put_u64(w, t.next_auto_inc())?;
            if t.def().ephemeral {
                put_u64(w, 0)?;
                continue;
            }
            put_u64(w, t.len() as u64)?;
            for row in t.iter() {
                put_bytes(w, row)?;
            }
            rows += t.len() as u64;
        }
    }
    Ok(rows)
}

/// Reads only the header, checking it.
pub fn read_header(storage: &dyn Storage, path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    open_checked(storage, path).map(|(_, header)| header)
}

fn header_of(path: &Path, len: u64, file: &mut impl Read) -> Result<SnapshotHeader, SnapshotError> {
    let corrupt = corrupt_at(path);
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact(&mut buf)
        .map_err(|e| corrupt(format!("header unreadable: {e}")))?;
    let header = SnapshotHeader::decode(&buf).map_err(&corrupt)?;
    let expected = HEADER_LEN as u64 + header.body_len;
    if len != expected {
        return Err(corrupt(format!(
            "file is {len} bytes; its header says {expected}"
        )));
    }
    if parse_name(path).is_some_and(|named| named != header.tx_id) {
        return Err(corrupt(format!(
            "named for another transaction than the {} its header holds",
            header.tx_id
        )));
    }
    Ok(header)
}

/// Opens a snapshot and checks its header, leaving the file at the body.
fn open_checked(
    storage: &dyn Storage,
    path: &Path,
) -> Result<(Box<dyn Read + Send>, SnapshotHeader), SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = storage.len(path).map_err(io_err)?;
    let mut file = storage.open_read(path).map_err(io_err)?;
    let header = header_of(path, len, &mut file)?;
    Ok((file, header))
}

fn corrupt_at(path: &Path) -> impl Fn(String) -> SnapshotError + '_ {
    move |reason| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads a snapshot's header and its compressed body back and checks both
/// checksums and the length, without decompressing or loading rows: what
/// the writer runs before anything may rely on a new snapshot.
pub fn check(storage: &dyn Storage, path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    let (file, header) = open_checked(storage, path)?;
    let mut body = Tally::new(BufReader::with_capacity(
        1 << 20,
        file.take(header.body_len),
    ));
    io::copy(&mut body, &mut io::sink()).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let crc = body.crc.finalize();
    if body.bytes != header.body_len || crc != header.body_crc {
        return Err(corrupt_at(path)(format!(
            "body checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.body_crc
        )));
    }
    Ok(header)
}

/// Reads, checks and loads a whole snapshot into fresh tables.
pub fn read(storage: &dyn Storage, path: &Path) -> Result<Loaded, SnapshotError> {
    let (file, header) = open_checked(storage, path)?;
    let corrupt = corrupt_at(path);
    let compressed = Tally::new(BufReader::with_capacity(
        1 << 20,
        file.take(header.body_len),
    ));
    let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(compressed))
        .map_err(|e| corrupt(format!("body: {e}")))?;
    let mut raw = Tally::new(BufReader::with_capacity(1 << 16, decoder));
    // A body that fails to decode is most often a damaged one: report the
    // checksum if that is what is wrong, the decoding error otherwise.
    let decoded = read_body(&mut raw);
    let mut rest = Vec::new();
    let trailing = raw.read_to_end(&mut rest);
    let raw_len = raw.bytes;
    let mut compressed = raw.inner.into_inner().finish().into_inner();
    let _ = io::copy(&mut compressed, &mut io::sink());
    let crc = compressed.crc.finalize();
    if crc != header.body_crc {
        return Err(corrupt(format!(
            "body checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.body_crc
        )));
    }
    let (modules, rows) = decoded.map_err(&corrupt)?;
    match trailing {
        Ok(0) => {}
        Ok(n) => return Err(corrupt(format!("{n} bytes after the last module"))),
        Err(e) => return Err(corrupt(format!("body: {e}"))),
    }
    if raw_len != header.raw_len {
        return Err(corrupt(format!(
            "body decompresses to {raw_len} bytes; its header says {}",
            header.raw_len
        )));
    }
    Ok(Loaded {
        header,
        modules,
        rows,
    })
}

fn get_u32(r: &mut impl Read) -> Result<u32, String> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|e| format!("body: {e}"))?;
    Ok(u32::from_le_bytes(b))
}

fn get_u64(r: &mut impl Read) -> Result<u64, String> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(|e| format!("body: {e}"))?;
    Ok(u64::from_le_bytes(b))
}

fn get_bytes(r: &mut impl Read, max: u32, what: &str) -> Result<Vec<u8>, String> {
    let len = get_u32(r)?;
    if len > max {
        return Err(format!("{what} of {len} bytes exceeds {max}"));
    }
    let mut b = vec![0u8; len as usize];
    r.read_exact(&mut b).map_err(|e| format!("body: {e}"))?;
    Ok(b)
}

/// A module's name, version and definition, as the start of a snapshot's
/// body lists them.
#[derive(Clone, Debug)]
pub struct ModuleEntry {
    pub name: String,
    pub version: u32,
    pub def: ModuleDef,
}

fn read_modules(r: &mut impl Read) -> Result<Vec<ModuleEntry>, String> {
    let count = get_u32(r)?;
    let mut modules: Vec<ModuleEntry> = Vec::new();
    for _ in 0..count {
        let name = String::from_utf8(get_bytes(r, NAME_BYTES_MAX, "module name")?)
            .map_err(|_| "module name is not UTF-8".to_string())?;
        if modules.iter().any(|m| m.name == name) {
            return Err(format!("module `{name}` appears twice"));
        }
        let version = get_u32(r)?;
        let json = get_bytes(r, DEFINITION_BYTES_MAX, "module definition")?;
        let def: ModuleDef = serde_json::from_slice(&json)
            .map_err(|e| format!("definition of `{name}` does not parse: {e}"))?;
        def.validate()
            .map_err(|e| format!("definition of `{name}`: {e}"))?;
        modules.push(ModuleEntry { name, version, def });
    }
    Ok(modules)
}

/// Reads the header and the module definitions only (the start of the
/// body), without the rows and without checking the body's checksum.
pub fn read_definitions(
    storage: &dyn Storage,
    path: &Path,
) -> Result<(SnapshotHeader, Vec<ModuleEntry>), SnapshotError> {
    let (file, header) = open_checked(storage, path)?;
    let corrupt = corrupt_at(path);
    let decoder = zstd::stream::read::Decoder::new(file.take(header.body_len))
        .map_err(|e| corrupt(format!("body: {e}")))?;
    let modules = read_modules(&mut BufReader::new(decoder)).map_err(&corrupt)?;
    Ok((header, modules))
}

fn get_row(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), String> {
    let len = get_u32(r)?;
    if len as usize > crate::limits::ROW_BYTES_MAX {
        return Err(format!(
            "row of {len} bytes exceeds {}",
            crate::limits::ROW_BYTES_MAX
        ));
    }
    buf.resize(len as usize, 0);
    r.read_exact(buf).map_err(|e| format!("body: {e}"))
}

fn read_body(r: &mut impl Read) -> Result<(Vec<LoadedModule>, u64), String> {
    let entries = read_modules(r)?;
    let mut modules = Vec::with_capacity(entries.len());
    let mut rows = 0u64;
    for ModuleEntry { name, version, def } in entries {
        let mut tables = Tables::new(&def);
        let table_count = get_u32(r)?;
        if table_count as usize != def.tables.len() {
            return Err(format!(
                "module `{name}` has {} tables; the snapshot holds {table_count}",
                def.tables.len()
            ));
        }
        for expected in 0..table_count {
            let id = get_u32(r)?;
            if id != expected {
                return Err(format!(
                    "module `{name}`: table {id} where table {expected} was due"
                ));
            }
            let next_auto_inc = get_u64(r)?;
            let count = get_u64(r)?;
            let table_name = def.tables[id as usize].name.clone();
            if def.tables[id as usize].ephemeral && count != 0 {
                return Err(format!("ephemeral table `{name}.{table_name}` has rows"));
            }
            let mut failed: Option<String> = None;
            // One buffer for every row: each row is then copied once, into
            // the shared allocation the table keeps.
            let mut buf = Vec::new();
            let source = (0..count).map_while(|_| {
                if failed.is_some() {
                    return None;
                }
                match get_row(r, &mut buf) {
                    Ok(()) => Some(Ok(RowBytes::from(&buf[..]))),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                }
            });
            let loaded = tables.bulk_load(id, source, next_auto_inc);
            if let Some(e) = failed {
                return Err(format!("table `{name}.{table_name}`: {e}"));
            }
            loaded.map_err(|e| format!("table `{name}.{table_name}`: {e}"))?;
            rows += count;
        }
        modules.push(LoadedModule {
            name,
            version,
            def,
            tables,
        });
    }
    Ok((modules, rows))
}
