//! WASI 0.2 for guests that import it, made deterministic.
//!
//! Most toolchains produce components that import WASI (Rust for
//! `wasm32-wasip2`, componentize-py, wasi-libc through the preview1 adapter).
//! Such a guest gets WASI's interfaces, but nothing in them that could make
//! two runs of the same reducer call differ or reach outside its tables:
//!
//! - **Clocks**: the wall clock and the monotonic clock both read the
//!   transaction's logical timestamp, and do not move during a call.
//!   Waiting on a clock (`subscribe-duration`, `subscribe-instant`: sleeping)
//!   traps, since time cannot pass inside a transaction.
//! - **Randomness**: `get-random-bytes`, `get-insecure-random-bytes` and
//!   `insecure-seed` come from ChaCha20 keyed by the transaction's seed
//!   ([`rng_for`]): the same call on the same state draws the same bytes.
//!   One request may ask for at most
//!   [`limits::RANDOM_BYTES_PER_REQUEST_MAX`] bytes.
//! - **Environment, arguments, working directory**: none.
//! - **Files**: no preopened directory, so there is no path to open.
//! - **Sockets**: TCP, UDP and name lookup are refused, as is every address.
//! - **stdin** is empty; **stdout and stderr** are captured, at most
//!   [`limits::OUTPUT_BYTES_PER_CALL_MAX`] bytes per call, and become lines
//!   of the module's log (stdout at `info`, stderr at `warn`) under the same
//!   limits as `host.log` lines.
//!
//! A guest importing anything outside [`GRANTED`] (and the Interstice
//! contract itself) is refused at publication by [`check_imports`], naming
//! the import.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng, TryRng};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, Resource};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::bindings::types::LogLevel;
use super::module::CallContext;
use super::state::{InstanceState, LogLine};
use crate::error::ModuleError;
use crate::limits;

/// The interfaces a guest may import, by `namespace:package/interface`
/// (any 0.2 version). Everything else is refused at publication.
pub const GRANTED: &[&str] = &[
    "interstice:module/types",
    "interstice:module/host",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// What a component's imports say about it.
pub(crate) struct Imports {
    /// Whether it imports any WASI interface (and so needs the call's time
    /// and seed set before each call).
    pub uses_wasi: bool,
}

/// Refuses a component that imports an interface outside [`GRANTED`].
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
) -> Result<Imports, ModuleError> {
    let mut uses_wasi = false;
    for (name, _) in component.component_type().imports(engine) {
        let unversioned = name.split('@').next().unwrap_or(name);
        let wasi = unversioned.starts_with("wasi:");
        let version_ok = !wasi
            || name
                .split('@')
                .nth(1)
                .is_some_and(|v| v.starts_with("0.2."));
        if !GRANTED.contains(&unversioned) || !version_ok {
            return Err(ModuleError::ImportNotGranted {
                import: name.to_string(),
            });
        }
        uses_wasi |= wasi;
    }
    Ok(Imports { uses_wasi })
}

/// Adds WASI 0.2 to the linker, with waiting on a clock replaced by a trap
/// and `insecure-seed` answered from the current call.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    // The context's own seed is fixed when it is built; the instance keeps
    // one context across calls, so the seed comes from the call instead.
    linker
        .instance("wasi:random/insecure-seed@0.2.12")?
        .func_wrap(
            "insecure-seed",
            |store: wasmtime::StoreContextMut<'_, InstanceState>, (): ()| {
                Ok((store.data().wasi_call().insecure_seed(),))
            },
        )?;
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!("{SLEEP_REFUSAL}"))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!("{SLEEP_REFUSAL}"))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The trap a guest gets for sleeping or waiting on a clock.
pub const SLEEP_REFUSAL: &str = "a reducer cannot sleep or wait on a clock: time does not pass inside a transaction \
     (wasi:clocks/monotonic-clock subscribe-duration and subscribe-instant are refused)";

/// Which output stream a byte came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// The guest's stdout and stderr of one call, bounded.
#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Bytes written past the bound and dropped.
    dropped: u64,
}

/// Output shared by the streams the guest holds and the host that drains it
/// after each call.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput(Arc<Mutex<Captured>>);

impl GuestOutput {
    fn with<R>(&self, f: impl FnOnce(&mut Captured) -> R) -> R {
        // A panic while holding this lock cannot leave `Captured` invalid.
        let mut captured = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut captured)
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        self.with(|c| {
            let room = limits::OUTPUT_BYTES_PER_CALL_MAX
                .saturating_sub(c.stdout.len() + c.stderr.len())
                .min(bytes.len());
            let buf = match stream {
                Stream::Stdout => &mut c.stdout,
                Stream::Stderr => &mut c.stderr,
            };
            buf.extend_from_slice(&bytes[..room]);
            c.dropped += (bytes.len() - room) as u64;
        });
    }

    /// Drops whatever a previous call left.
    pub(crate) fn clear(&self) {
        self.with(|c| *c = Captured::default());
    }

    /// The call's output as log lines: stdout at `info`, stderr at `warn`,
    /// one line per `\n` (a last line without one counts too), invalid UTF-8
    /// replaced. Then the line saying how much was dropped, if anything was.
    pub(crate) fn drain(&self) -> (Vec<LogLine>, Option<LogLine>) {
        let captured = self.with(std::mem::take);
        let mut lines = Vec::new();
        for (bytes, level) in [
            (&captured.stdout, LogLevel::Info),
            (&captured.stderr, LogLevel::Warn),
        ] {
            let text = String::from_utf8_lossy(bytes);
            for line in text.lines() {
                lines.push(LogLine {
                    level,
                    message: line.to_string(),
                });
            }
        }
        let cut = (captured.dropped > 0).then(|| LogLine {
            level: LogLevel::Warn,
            message: format!(
                "output cut: {} more bytes of stdout and stderr dropped (at most {} bytes per call)",
                captured.dropped,
                limits::OUTPUT_BYTES_PER_CALL_MAX
            ),
        });
        (lines, cut)
    }
}

/// One guest handle on stdout or stderr.
#[derive(Clone)]
struct Capture {
    output: GuestOutput,
    stream: Stream,
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Writes past the bound are accepted and dropped: a guest that
        // prints too much is cut, not failed.
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a WASI guest can observe of the current call, shared by the clocks
/// and generators of the instance's one WASI context and set before each
/// call ([`CallState::enter`]): cheaper than building a context per call.
#[derive(Clone)]
pub(crate) struct CallState(Arc<Mutex<Observed>>);

struct Observed {
    micros: i64,
    random: ChaCha20Rng,
    insecure: ChaCha20Rng,
    insecure_seed: (u64, u64),
}

impl Observed {
    fn of(ctx: &CallContext) -> Observed {
        let mut seed = rng_for(ctx.seed, STREAM_INSECURE_SEED);
        Observed {
            micros: ctx.timestamp_micros,
            random: rng_for(ctx.seed, STREAM_RANDOM),
            insecure: rng_for(ctx.seed, STREAM_INSECURE),
            insecure_seed: (seed.next_u64(), seed.next_u64()),
        }
    }
}

/// The context outside any transaction (instantiation, `describe`): time
/// zero, seed zero.
fn idle() -> CallContext {
    CallContext {
        tx_id: 0,
        timestamp_micros: 0,
        caller: crate::caller::Caller::operator(),
        connection_id: None,
        owner: interstice_store::Identity::operator(),
        module: interstice_store::Identity::operator(),
        seed: 0,
    }
}

impl Default for CallState {
    fn default() -> Self {
        CallState(Arc::new(Mutex::new(Observed::of(&idle()))))
    }
}

impl CallState {
    fn lock(&self) -> MutexGuard<'_, Observed> {
        // Nothing here can be left half-updated by a panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time and randomness of `ctx` from now on; of no transaction (time
    /// zero, seed zero) when `None`.
    pub(crate) fn enter(&self, ctx: Option<&CallContext>) {
        *self.lock() = Observed::of(ctx.unwrap_or(&idle()));
    }

    fn micros(&self) -> u64 {
        self.lock().micros.max(0).unsigned_abs()
    }

    pub(crate) fn insecure_seed(&self) -> (u64, u64) {
        self.lock().insecure_seed
    }
}

/// Both clocks, stopped at the call's timestamp.
struct TxClock(CallState);

impl HostWallClock for TxClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.0.micros())
    }
}

impl HostMonotonicClock for TxClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.0.micros().saturating_mul(1_000)
    }
}

/// One of the call's generators.
struct CallRng {
    state: CallState,
    insecure: bool,
}

impl TryRng for CallRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.with(|r| r.next_u32()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.with(|r| r.next_u64()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.with(|r| r.fill_bytes(dst));
        Ok(())
    }
}

impl CallRng {
    fn with<R>(&self, f: impl FnOnce(&mut ChaCha20Rng) -> R) -> R {
        let mut observed = self.state.lock();
        f(if self.insecure {
            &mut observed.insecure
        } else {
            &mut observed.random
        })
    }
}

/// Stream tags that keep the generators of one transaction apart.
const STREAM_RANDOM: u8 = 1;
const STREAM_INSECURE: u8 = 2;
const STREAM_INSECURE_SEED: u8 = 3;

/// The `chacha20` crate's `ChaCha20Rng` (20 rounds, stream 0, from the
/// start of its output) keyed with the transaction's seed as 8 bytes LE,
/// then the stream tag, then 23 zero bytes. Replay never runs a guest, so
/// a change of generator could change only what a guest draws in later
/// calls, never the state rebuilt from the log.
pub fn rng_for(seed: u64, stream: u8) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8] = stream;
    ChaCha20Rng::from_seed(key)
}

/// An instance's WASI context: everything a guest can observe through it
/// is read from `call` (or is empty), and its output goes to `output`.
pub(crate) fn context(call: &CallState, output: &GuestOutput) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(Capture {
            output: output.clone(),
            stream: Stream::Stdout,
        })
        .stderr(Capture {
            output: output.clone(),
            stream: Stream::Stderr,
        })
        .wall_clock(TxClock(call.clone()))
        .monotonic_clock(TxClock(call.clone()))
        .secure_random(CallRng {
            state: call.clone(),
            insecure: false,
        })
        .insecure_random(CallRng {
            state: call.clone(),
            insecure: true,
        })
        .max_random_size(limits::RANDOM_BYTES_PER_REQUEST_MAX)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_depend_on_seed_and_stream_only() {
        let draw = |seed, stream| rng_for(seed, stream).next_u64();
        assert_eq!(draw(7, STREAM_RANDOM), draw(7, STREAM_RANDOM));
        assert_ne!(draw(7, STREAM_RANDOM), draw(8, STREAM_RANDOM));
        assert_ne!(draw(7, STREAM_RANDOM), draw(7, STREAM_INSECURE));
    }

    #[test]
    fn output_is_bounded_and_split_into_lines() {
        let out = GuestOutput::default();
        out.write(Stream::Stdout, b"one\ntwo\n");
        out.write(Stream::Stderr, b"oops");
        let big = vec![b'x'; limits::OUTPUT_BYTES_PER_CALL_MAX];
        out.write(Stream::Stdout, &big);
        let (lines, cut) = out.drain();
        assert_eq!(lines[0].message, "one");
        assert_eq!(lines[1].message, "two");
        assert_eq!(
            lines[2].message.len(),
            limits::OUTPUT_BYTES_PER_CALL_MAX - 12
        );
        assert_eq!(lines[3].message, "oops");
        assert_eq!(lines[3].level, LogLevel::Warn);
        let cut = cut.unwrap().message;
        assert!(cut.starts_with("output cut: 12 more bytes"), "{cut}");
        let (lines, cut) = out.drain();
        assert!(lines.is_empty() && cut.is_none(), "drained");
    }
}
