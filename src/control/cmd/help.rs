//! `help`: the commands of the control socket.

use serde_json::json;

use super::super::answer::{self, Answer, Done};

pub const HELP: &str = "commands (prefix any with `json` for a JSON answer):
  stats                       connections, frames, bytes, errors, rows, queues, the log
  latency [reply|insert|e2e|commit]  percentiles since start and for the last interval
  latency reset               start the latency histograms afresh
  devices [--limit N]         online badges
  device IMEI                 one badge
  send [--wait SECS] IMEI TEXT   0x80 online command (queued if the badge is offline)
  message IMEI TEXT           0x82 message (UTF-16BE on the wire)
  commands IMEI               recent and queued commands with their status
  geo                         geo providers: calls, hits, failures, breakers, caches, latency
  geo reload                  read the cell database file again
  beacons                     the beacon registry: size, last load, known/unknown sightings
  beacons reload              load the registry again now
  beacons unknown [--limit N] beacons heard that the registry does not know, most heard first
  allowlist                   which IMEIs may log in: size, source, last load, last error, refused
  allowlist reload            load the allowlist again now (a failure keeps the previous one)
  clones                      IMEIs that keep replacing each other from different addresses
  rejected                    rows ClickHouse refused for good: per table, the file, the last error
  metrics                     Prometheus text format (also: HTTP GET /metrics)
  watch [KIND...]             stream live events as JSON lines until disconnect
                              (status, location, alarm, attendance, bluetooth, command)
  auth TOKEN | help | quit";

pub fn run() -> Answer {
    answer::ok(Done::new(HELP, json!({ "help": HELP })))
}
