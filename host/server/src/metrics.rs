//! `/metrics`: Prometheus (OpenMetrics text) figures of the server and of
//! the database under it.

use std::sync::Arc;

use interstice_runtime::Database;
use interstice_runtime::log::SYNC_BUCKETS_MICROS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the server itself counts; the rest is read off the database at
/// each scrape.
pub struct Metrics {
    registry: Registry,
    /// Reducer calls that committed (durable) and that did not.
    pub calls_committed: Counter,
    pub calls_failed: Counter,
    /// Seconds from a call's arrival to its durable answer.
    pub commit_latency: Histogram,
    /// Transactions handed to subscribers (every committed one).
    pub transactions_committed: Counter,
    /// Subscribers disconnected for falling behind.
    pub subscribers_dropped: Counter,
    /// Reducer calls over HTTP refused at once with 503 `overloaded`
    /// (`calls_queued_max`).
    pub calls_shed: Counter,
    /// Table reads and SQL statements over HTTP refused at once with 503
    /// `overloaded` (`reads_queued_max`).
    pub reads_shed: Counter,
    /// Connections served now, within `max_connections` (WebSocket
    /// sessions included).
    pub connections_open: Gauge,
    /// Connections past `max_connections`: answered once and closed, or
    /// closed unread.
    pub connections_refused: Counter,
}

impl Metrics {
    pub fn new(db: Arc<Database>) -> Metrics {
        let mut registry = Registry::with_prefix("interstice");
        let calls_committed = Counter::default();
        let calls_failed = Counter::default();
        let transactions_committed = Counter::default();
        let subscribers_dropped = Counter::default();
        let calls_shed = Counter::default();
        let reads_shed = Counter::default();
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        // 50 µs to ~3.3 s.
        let commit_latency = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(50e-6, 2.0, 17),
        );
        registry.register(
            "transactions_committed",
            "Transactions committed and durable (reducer calls, publications, deletions)",
            transactions_committed.clone(),
        );
        registry.register(
            "calls_committed",
            "Reducer calls over HTTP that committed and were durable when answered",
            calls_committed.clone(),
        );
        registry.register(
            "calls_failed",
            "Reducer calls over HTTP that did not commit",
            calls_failed.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from a reducer call's arrival to its durable answer",
            commit_latency.clone(),
        );
        registry.register(
            "subscribers_dropped",
            "WebSocket subscribers disconnected for falling behind",
            subscribers_dropped.clone(),
        );
        registry.register(
            "calls_shed",
            "Reducer calls over HTTP refused at once with 503 overloaded (calls_queued_max)",
            calls_shed.clone(),
        );
        registry.register(
            "reads_shed",
            "Table reads and SQL statements over HTTP refused at once with 503 overloaded (reads_queued_max)",
            reads_shed.clone(),
        );
        registry.register(
            "connections_open",
            "Connections served now, within max_connections (WebSocket sessions included)",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections past max_connections (answered once and closed, or closed unread)",
            connections_refused.clone(),
        );
        registry.register_collector(Box::new(DatabaseCollector { db }));
        Metrics {
            registry,
            calls_committed,
            calls_failed,
            commit_latency,
            transactions_committed,
            subscribers_dropped,
            calls_shed,
            reads_shed,
            connections_open,
            connections_refused,
        }
    }

    /// The text a scrape gets.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Figures read off the database at each scrape.
struct DatabaseCollector {
    db: Arc<Database>,
}

impl std::fmt::Debug for DatabaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseCollector")
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Bytes of the regular files directly under `dir` (0 if it is missing).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

impl Collector for DatabaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_log(&mut encoder)?;
        self.encode_schedules(&mut encoder)?;
        self.encode_state(&mut encoder)
    }
}

impl DatabaseCollector {
    /// The log writer's work: records, syncs, group commit, fsync latency.
    fn encode_log(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let log = self.db.log().stats();
        counter(
            e,
            "log_records",
            "Records appended to the log since start",
            log.records,
        )?;
        counter(
            e,
            "log_syncs",
            "fdatasync calls on the log since start",
            log.syncs,
        )?;
        gauge(
            e,
            "transactions_per_fsync",
            "Records made durable per fdatasync since start (group commit)",
            match log.syncs {
                0 => 0.0,
                n => log.records as f64 / n as f64,
            },
        )?;
        let buckets: Vec<(f64, u64)> = SYNC_BUCKETS_MICROS
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain(std::iter::once(f64::MAX))
            .zip(log.sync_buckets.iter().copied())
            .collect();
        let mut histogram = e.encode_descriptor(
            "fsync_latency_seconds",
            "Duration of each fdatasync of the log",
            None,
            MetricType::Histogram,
        )?;
        histogram.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            log.sync_micros as f64 / 1e6,
            log.syncs,
            &buckets,
            None,
        )?;
        Ok(())
    }

    /// Scheduled runs: how many, how many failed, how late.
    fn encode_schedules(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Ok(stats) = self.db.schedule_stats() else {
            return Ok(());
        };
        counter(
            e,
            "scheduled_runs",
            "Rows of schedule tables whose reducer ran and committed",
            stats.runs,
        )?;
        counter(
            e,
            "scheduled_failures",
            "Scheduled runs whose reducer failed (each row then backs off)",
            stats.failures,
        )?;
        let buckets: Vec<(f64, u64)> = interstice_runtime::LATENESS_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(stats.lateness_buckets.iter().copied())
            .collect();
        let mut histogram = e.encode_descriptor(
            "scheduled_lateness_seconds",
            "How long after its due time each scheduled row ran",
            None,
            MetricType::Histogram,
        )?;
        histogram.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            stats.lateness_sum_secs,
            stats.lateness_count,
            &buckets,
            None,
        )?;
        Ok(())
    }

    /// Bytes on disk, the last start, guest activity, the newest
    /// transaction released.
    fn encode_state(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let guests = self.db.counters();
        let replay = self.db.replay_stats();
        let dir = self.db.dir();
        gauge(
            e,
            "log_bytes",
            "Bytes of log segments on disk",
            dir_bytes(&dir.join(interstice_runtime::LOG_DIR)) as f64,
        )?;
        gauge(
            e,
            "snapshot_bytes",
            "Bytes of snapshots on disk",
            dir_bytes(&dir.join(interstice_runtime::SNAPSHOTS_DIR)) as f64,
        )?;
        gauge(
            e,
            "replay_duration_seconds",
            "Time the last start took to load the snapshot and replay the log",
            replay.duration_ms / 1000.0,
        )?;
        counter(
            e,
            "guest_instantiations",
            "Guest instances created",
            guests.guest_instantiations,
        )?;
        counter(e, "guest_calls", "Calls into guests", guests.guest_calls)?;
        counter(
            e,
            "fuel_consumed",
            "Fuel guests consumed",
            guests.fuel_consumed,
        )?;
        gauge(
            e,
            "last_tx_id",
            "The newest transaction handed to subscribers",
            self.db.released_tx() as f64,
        )?;
        // Held only as long as it takes to read two counts.
        if let Ok((queries, subscribers)) = self.db.live_queries() {
            gauge(
                e,
                "live_queries",
                "SQL queries followed for subscribers (each shared by all who subscribe to its text)",
                queries as f64,
            )?;
            gauge(
                e,
                "live_query_subscribers",
                "Subscriptions to SQL queries",
                subscribers as f64,
            )?;
        }
        Ok(())
    }
}
