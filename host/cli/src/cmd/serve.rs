//! `interstice serve`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use interstice_runtime::Database;
use interstice_server::{ServerConfig, auth};

use crate::args::DataDir;
use crate::cmd::demo::bundled_bank;

/// Serve the data directory's modules over HTTP and WebSocket
/// (docs/http-api.md) until SIGINT or SIGTERM.
#[derive(clap::Args)]
pub struct Serve {
    /// Address to listen on (default 127.0.0.1:3000, or the config
    /// file's `listen`).
    #[arg(long, env = "INTERSTICE_LISTEN")]
    listen: Option<String>,
    /// Server settings (docs/http-api.md lists the keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Build and publish the bundled `bank` example first, unless a
    /// module of that name exists.
    #[arg(long)]
    with_example: bool,
    /// Serve this directory's files (a web app, e.g. clients/web-chat/dist)
    /// at `/` beside the API.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    #[command(flatten)]
    dir: DataDir,
}

impl Serve {
    /// Opens the database, serves it until a signal, then finishes requests
    /// in flight, syncs the log and releases the directory.
    pub fn run(self) -> Result<()> {
        let mut server_config = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(listen) = self.listen {
            server_config.listen = listen;
        }
        if let Some(dir) = self.static_dir {
            if !dir.join("index.html").is_file() {
                bail!("--static {}: no index.html there", dir.display());
            }
            server_config.static_dir = Some(dir);
        }
        let db = Arc::new(self.dir.open()?);
        if self.with_example && db.module_def("bank")?.is_none() {
            publish_example(&db)?;
        }
        let token = admin_token(&db)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let served = runtime.block_on(async {
            let listener = interstice_server::bind(&server_config.listen).await?;
            let addr = listener.local_addr().context("reading the bound address")?;
            println!("listening on http://{addr}");
            std::io::stdout().flush()?;
            interstice_server::serve(
                db.clone(),
                token,
                server_config,
                listener,
                interstice_server::signal(),
            )
            .await?;
            anyhow::Ok(())
        });
        runtime.shutdown_timeout(std::time::Duration::from_secs(30));
        served?;
        close(db)
    }
}

fn publish_example(db: &Database) -> Result<()> {
    let crate_dir = bundled_bank();
    eprintln!("building {} ...", crate_dir.display());
    let component = interstice_guest_build::build_component(&crate_dir, None, None)
        .context("building the bundled bank module")?;
    let wasm = std::fs::read(&component)?;
    db.publish("bank", &wasm)
        .context("publishing the bundled bank module")?;
    eprintln!("published the example module `bank`");
    Ok(())
}

fn admin_token(db: &Database) -> Result<String> {
    let (token, source) = auth::admin_token(db.dir(), std::env::var(auth::TOKEN_ENV).ok())
        .context("setting up the admin token")?;
    match source {
        auth::TokenSource::Environment => {
            eprintln!("admin token: from {}", auth::TOKEN_ENV)
        }
        auth::TokenSource::File(p) => eprintln!("admin token: in {}", p.display()),
        auth::TokenSource::Generated(p) => {
            eprintln!("admin token: generated into {} (mode 0600)", p.display())
        }
    }
    Ok(token)
}

/// After the server stopped: syncs the log and releases the directory.
fn close(db: Arc<Database>) -> Result<()> {
    match Arc::try_unwrap(db) {
        Ok(db) => {
            db.log().sync().context("syncing the log at shutdown")?;
            drop(db);
            eprintln!("stopped: every transaction is durable, the data directory is released");
            Ok(())
        }
        Err(_) => bail!("requests were still running at shutdown; the log was not closed cleanly"),
    }
}
