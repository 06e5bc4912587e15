//! A guest built for `wasm32-wasip2` that tries everything WASI offers: the
//! tests check that what it sees is a function of the transaction, and that
//! files, environment, sockets and sleeping are refused.

#[interstice_sdk::module]
mod wasi_probe {
    use interstice_sdk::prelude::*;
    use std::io::Read;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    /// What the guest observed, by name.
    #[table(name = facts)]
    pub struct Fact {
        #[primary_key]
        pub name: String,
        pub value: String,
    }

    fn put(ctx: &ReducerContext, name: &str, value: String) -> Result<(), String> {
        let facts = ctx.db.facts();
        let fact = Fact {
            name: name.to_string(),
            value,
        };
        if facts.find(&fact.name).is_some() {
            facts.update(fact)?;
        } else {
            facts.insert(fact)?;
        }
        Ok(())
    }

    /// Records time, randomness, environment and standard input as seen
    /// through WASI, and prints to stdout and stderr.
    #[reducer]
    pub fn observe(ctx: &ReducerContext) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        put(ctx, "wall_micros", now.as_micros().to_string())?;
        put(ctx, "ctx_micros", ctx.timestamp_micros.to_string())?;
        let start = Instant::now();
        put(
            ctx,
            "monotonic_elapsed_nanos",
            start.elapsed().as_nanos().to_string(),
        )?;
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        put(ctx, "random", format!("{random:02x?}"))?;
        put(ctx, "vars", std::env::vars_os().count().to_string())?;
        put(ctx, "args", std::env::args_os().count().to_string())?;
        let mut stdin = Vec::new();
        let read = std::io::stdin().read_to_end(&mut stdin);
        put(
            ctx,
            "stdin",
            format!("{:?} {}", read.map_err(|e| e.kind()), stdin.len()),
        )?;
        println!("observed at {}", now.as_micros());
        eprintln!("stderr at {}", ctx.timestamp_micros);
        Ok(())
    }

    /// Hash-map iteration order, which std seeds from WASI randomness.
    #[reducer]
    pub fn hash_order(ctx: &ReducerContext) -> Result<(), String> {
        let map: std::collections::HashMap<u32, ()> = (0..16).map(|i| (i, ())).collect();
        let order: Vec<u32> = map.keys().copied().collect();
        put(ctx, "hash_order", format!("{order:?}"))
    }

    #[reducer]
    pub fn read_file(_ctx: &ReducerContext, path: String) -> Result<(), String> {
        match std::fs::read(&path) {
            Ok(bytes) => Err(format!("ACCESS: read {} bytes of {path}", bytes.len())),
            Err(e) => Err(format!("open {path}: {e}")),
        }
    }

    #[reducer]
    pub fn write_file(_ctx: &ReducerContext, path: String) -> Result<(), String> {
        match std::fs::write(&path, b"escaped") {
            Ok(()) => Err(format!("ACCESS: wrote {path}")),
            Err(e) => Err(format!("create {path}: {e}")),
        }
    }

    #[reducer]
    pub fn read_env(_ctx: &ReducerContext, name: String) -> Result<(), String> {
        match std::env::var(&name) {
            Ok(value) => Err(format!("ACCESS: {name}={value}")),
            Err(e) => Err(format!("env {name}: {e}")),
        }
    }

    #[reducer]
    pub fn connect(_ctx: &ReducerContext, addr: String) -> Result<(), String> {
        match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => Err(format!("ACCESS: connected to {addr}")),
            Err(e) => Err(format!("connect {addr}: {e}")),
        }
    }

    #[reducer]
    pub fn bind(_ctx: &ReducerContext, addr: String) -> Result<(), String> {
        match std::net::UdpSocket::bind(addr.as_str()) {
            Ok(_) => Err(format!("ACCESS: bound {addr}")),
            Err(e) => Err(format!("bind {addr}: {e}")),
        }
    }

    /// Prints `lines` lines of `width` bytes each.
    #[reducer]
    pub fn shout(_ctx: &ReducerContext, lines: u32, width: u32) -> Result<(), String> {
        let line = "x".repeat(width as usize);
        for i in 0..lines {
            println!("{i} {line}");
        }
        Ok(())
    }

    #[reducer]
    pub fn nap(_ctx: &ReducerContext, millis: u64) -> Result<(), String> {
        std::thread::sleep(std::time::Duration::from_millis(millis));
        Ok(())
    }

    /// Takes `count` handles on stdout and never gives them back.
    #[reducer]
    pub fn leak_handles(_ctx: &ReducerContext, count: u32) -> Result<(), String> {
        for _ in 0..count {
            std::mem::forget(wasip2::cli::stdout::get_stdout());
        }
        Ok(())
    }

    #[reducer]
    pub fn exit(_ctx: &ReducerContext, code: i32) -> Result<(), String> {
        std::process::exit(code)
    }
}
