//! The whole ingester assembled: the services the shards lean on (geo),
//! the sink, the shards, and the control socket, started in that order and
//! stopped in the reverse one, so nothing accepted is dropped on the way
//! out. `badge-ingest serve` is this plus signal handling; the integration
//! tests start it the same way.

use std::sync::Arc;

use crate::allowlist::AllowlistRefresher;
use crate::beacons::{BeaconRefresher, BeaconRegistry, BeaconSource};
use crate::config::Config;
use crate::config::SinkKind;
use crate::control::{self, ControlServer};
use crate::events::Events;
use crate::geo::GeoService;
use crate::metrics::ShardMetrics;
use crate::record::lookup::ImeiAllowlist;
use crate::server::{RunningServer, ServerHandle, Services};
use crate::sink::SinkWorkers;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("starting the services runtime: {0}")]
    Runtime(std::io::Error),
    #[error("starting the geo service: {0}")]
    Geo(#[from] crate::geo::GeoError),
    #[error("starting live events: {0}")]
    Events(#[from] crate::events::EventsError),
    #[error("loading the allowlist: {0}")]
    Allowlist(#[from] crate::allowlist::AllowlistError),
    #[error("clock zones: {0}")]
    Zones(#[from] crate::zones::ZoneError),
    #[error("loading the beacon registry: {0}")]
    Beacons(#[from] crate::beacons::BeaconError),
    #[error("opening the log: {0}")]
    Log(#[from] crate::log::RecoveryError),
    #[error("starting the sink: {0}")]
    Sink(#[from] crate::sink::SinkError),
    #[error("starting the server: {0}")]
    Server(#[from] crate::server::ServerError),
    #[error("starting the control socket: {0}")]
    Control(#[from] control::ControlError),
}

/// A running ingester.
pub struct App {
    pub config: Arc<Config>,
    server: RunningServer,
    workers: SinkWorkers,
    control: Option<ControlServer>,
    geo: Option<GeoService>,
    beacons: Option<BeaconRefresher>,
    events: Events,
    /// Keeps `limits.allowlist` fresh; `None` when every IMEI may log in.
    allowlist: Option<AllowlistRefresher>,
    /// What the shards ask at login (the same list as `allowlist`).
    imei_allowlist: Option<Arc<dyn ImeiAllowlist>>,
    /// Keeps the `devices` table's clock zones fresh, when asked to.
    zones: Option<crate::zones::ZoneRefresher>,
    /// Runs the geo service's lookups: HTTP and the cell database stay off
    /// the shards' threads.
    runtime: tokio::runtime::Runtime,
}

impl App {
    pub fn start(config: Arc<Config>) -> Result<App, AppError> {
        // First: a control socket path that is taken, or a list that
        // cannot be loaded, fails the start before anything else runs.
        control::preflight(&config)?;
        let allowlist = AllowlistRefresher::start(&config)?;
        let imei_allowlist = allowlist.as_ref().map(AllowlistRefresher::shared);
        let zones = crate::zones::ZoneRefresher::start(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("services")
            .enable_all()
            .build()
            .map_err(AppError::Runtime)?;
        let geo = if config.geo.enabled() {
            let (_, service) = GeoService::start(config.geo.clone(), runtime.handle().clone())?;
            Some(service)
        } else {
            None
        };
        let registry = BeaconRegistry::new();
        let beacons = match beacon_source(&config) {
            Some(source) => Some(BeaconRefresher::start(
                &config.beacons,
                source,
                registry.clone(),
            )?),
            None => None,
        };
        // Always running (one thread): a `watch` may come at any time.
        let events = Events::start(&config.events)?;
        let services = Services {
            geo: geo.as_ref().map(GeoService::handle),
            beacons: registry,
            beacon_source: beacons.as_ref().map(BeaconRefresher::handle),
            events: events.clone(),
            allowlist: imei_allowlist.clone(),
            zones: zones.as_ref().map(crate::zones::ZoneRefresher::table),
        };
        let (server, workers) = start_ingest(config.clone(), services.clone())?;
        let sink_stats = workers.stats.clone();
        let ctx = control::Context::with_services(
            server.handle(),
            sink_stats,
            Some(config.server.control_token.clone()),
            services,
            events.clone(),
            allowlist.as_ref().map(|a| a.allowlist().clone()),
        );
        let control = control::start(&config, ctx)?;
        Ok(App {
            config,
            server,
            workers,
            control: Some(control),
            geo,
            beacons,
            events,
            allowlist,
            imei_allowlist,
            zones,
            runtime,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    pub fn control_addr(&self) -> &crate::config::ControlAddr {
        &self.control.as_ref().expect("running").addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.server.uptime()
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Which IMEIs may log in, as the shards ask it; `None`: all may.
    pub fn imei_allowlist(&self) -> Option<&Arc<dyn ImeiAllowlist>> {
        self.imei_allowlist.as_ref()
    }

    /// The allowlist with its figures and `reload`; `None`: none configured.
    pub fn allowlist(&self) -> Option<&crate::allowlist::Allowlist> {
        self.allowlist.as_ref().map(AllowlistRefresher::allowlist)
    }

    /// What the writer and the logs count.
    pub fn sink_stats(&self) -> &std::sync::Arc<crate::sink::SinkStats> {
        &self.workers.stats
    }

    /// Counters of every shard.
    pub fn metrics(&self) -> Vec<ShardMetrics> {
        self.server.metrics()
    }

    /// Stops taking control commands and connections, lets the shards
    /// finish their frames (and their rows' lookups), and waits until the
    /// sink has written or spooled every row.
    pub fn shutdown(mut self) -> Result<Vec<ShardMetrics>, crate::sink::SinkError> {
        drop(self.control.take());
        let shards = self.server.shutdown();
        let flushed = self.workers.finish();
        // Webhooks get a bounded grace to deliver what the last rows made.
        self.events.shutdown();
        drop(self.geo.take());
        drop(self.beacons.take());
        drop(self.allowlist.take());
        drop(self.zones.take());
        self.runtime
            .shutdown_timeout(std::time::Duration::from_secs(5));
        flushed.map(|()| shards)
    }
}

/// The logs recovered, the writer, and the shards: ingestion without the
/// services around it (the control socket, geo, beacons, events), for
/// the tests and tools that want only that.
pub fn start_ingest(
    config: Arc<Config>,
    services: Services,
) -> Result<(RunningServer, SinkWorkers), AppError> {
    let logs = (0..config.shards())
        .map(|shard| crate::log::recover(&config.log.dir, shard))
        .collect::<Result<Vec<_>, _>>()?;
    let (sink, workers) = crate::sink::start(&config, &logs)?;
    let server = crate::server::start(config, sink, services, logs)?;
    Ok((server, workers))
}

/// Where the beacon registry comes from, or `None` when there is none:
/// disabled, or neither a file nor a ClickHouse sink to read it from.
fn beacon_source(config: &Config) -> Option<BeaconSource> {
    let beacons = &config.beacons;
    if !beacons.enabled {
        return None;
    }
    if let Some(path) = &beacons.file {
        return Some(BeaconSource::File(path.clone()));
    }
    (config.sink.kind == SinkKind::ClickHouse).then(|| BeaconSource::ClickHouse {
        client: crate::sink::clickhouse::client(config),
        database: config.clickhouse.database.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BeaconsConfig;

    #[test]
    fn the_source_follows_the_sink_unless_a_file_is_named() {
        let mut config = Config::default();
        let c = BeaconsConfig::default();
        assert!(matches!(
            beacon_source(&Config { beacons: c.clone(), ..config.clone() }),
            Some(BeaconSource::ClickHouse { ref database, .. }) if database == "badges"
        ));
        config.sink.kind = SinkKind::Count;
        assert!(beacon_source(&Config {
            beacons: c.clone(),
            ..config.clone()
        })
        .is_none());
        let off = BeaconsConfig {
            enabled: false,
            file: Some("b.csv".into()),
            ..c
        };
        assert!(beacon_source(&Config {
            beacons: off,
            ..config.clone()
        })
        .is_none());
    }
}
