//! Following a server: a table's changes, a module's log lines.

use anyhow::{Context, Result};

use crate::args::Remote;
use crate::client::Client;

/// Follow a table on a server: its rows, then every committed change,
/// as JSON lines.
#[derive(clap::Args)]
pub struct Subscribe {
    module: String,
    table: String,
    /// Only rows whose primary key or indexed column holds a value:
    /// COLUMN=VALUE.
    #[arg(long = "where", value_name = "COLUMN=VALUE")]
    filter: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
    /// The server's URL.
    #[arg(long, env = "INTERSTICE_SERVER")]
    server: String,
    /// An identity token to subscribe with: a module with lifecycle
    /// reducers then runs `client_connected` and `client_disconnected`.
    #[arg(long, env = "INTERSTICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token, to read a private table (or set
    /// INTERSTICE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

impl Subscribe {
    pub fn run(self) -> Result<()> {
        Client::new(&self.server, self.token_file, self.token).subscribe(
            &self.module,
            &self.table,
            self.filter.as_deref(),
            self.max_messages,
        )
    }
}

/// Follow a module's log lines on a server (admin token required).
#[derive(clap::Args)]
pub struct Logs {
    module: String,
    /// Stop after this many lines.
    #[arg(long)]
    max_messages: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

impl Logs {
    pub fn run(self) -> Result<()> {
        let client = self
            .remote
            .client()
            .context("`logs` needs --server URL (or INTERSTICE_SERVER)")?;
        client.logs(&self.module, self.max_messages)
    }
}
