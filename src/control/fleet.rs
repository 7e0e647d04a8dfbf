//! `ctl` against several instances behind one balancer: a badge is on
//! whichever instance its connection landed on, so a command about one
//! badge (`send`, `message`, `device`, `commands`) goes to the instance
//! that holds it; `stats` and `devices` are merged; anything else is asked
//! of every instance, each answer under its address.

use serde_json::{json, Map, Value};

use crate::protocol::Imei;

use super::client::{Client, ClientError};

/// One client per instance, with the address it is known by.
pub struct Fleet {
    instances: Vec<(String, Client)>,
}

impl Fleet {
    pub fn new(instances: Vec<(String, Client)>) -> Self {
        Self { instances }
    }

    /// Runs one command line; whether it succeeded, and the answer's text.
    pub fn command(&mut self, line: &str) -> Result<(bool, String), ClientError> {
        let line = line.trim();
        let (json, command) = match line.strip_prefix("json ") {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.first().copied() {
            Some("send" | "message" | "device") => {
                let Some(imei) = words[1..].iter().find_map(|w| w.parse::<Imei>().ok()) else {
                    // Let an instance say what is wrong with the arguments.
                    return self.instances[0].1.command(line);
                };
                match self.holder(imei)? {
                    Some(i) => self.instances[i].1.command(line),
                    None if words[0] == "device" => self.instances[0].1.command(line),
                    None => Ok((false, not_online(json, imei, self.instances.len()))),
                }
            }
            Some("stats") if words.len() == 1 => self.stats(json),
            Some("devices") => self.devices(json, command),
            _ => self.each(json, line),
        }
    }

    /// The instance the badge is online on.
    fn holder(&mut self, imei: Imei) -> Result<Option<usize>, ClientError> {
        for (i, (_, client)) in self.instances.iter_mut().enumerate() {
            let (ok, answer) = client.command(&format!("json device {imei}"))?;
            let online = ok
                && serde_json::from_str::<Value>(&answer)
                    .is_ok_and(|v| v["device"].is_object() && v["device"]["online"] != false);
            if online {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Every instance's answer to `line`, each under its address.
    fn each(&mut self, json: bool, line: &str) -> Result<(bool, String), ClientError> {
        let mut all_ok = true;
        let mut text = String::new();
        let mut answers = Map::new();
        for (addr, client) in &mut self.instances {
            let (ok, answer) = client.command(line)?;
            all_ok &= ok;
            if json {
                answers.insert(addr.clone(), parse(&answer));
            } else {
                text.push_str(&format!("== {addr}\n{answer}"));
            }
        }
        if json {
            text = format!("{}\n", json!({ "ok": all_ok, "instances": answers }));
        }
        Ok((all_ok, text))
    }

    /// Each instance's `stats`, then the totals of all of them.
    fn stats(&mut self, json: bool) -> Result<(bool, String), ClientError> {
        let mut total = Map::new();
        let mut per = Map::new();
        let mut text = String::new();
        let mut all_ok = true;
        for (addr, client) in &mut self.instances {
            let (ok, answer) = client.command("json stats")?;
            all_ok &= ok;
            let v = parse(&answer);
            if let Some(t) = v["total"].as_object() {
                add_numbers(&mut total, t);
            }
            if !json {
                let (_, shown) = client.command("stats")?;
                text.push_str(&format!("== {addr}\n{shown}"));
            }
            per.insert(addr.clone(), v);
        }
        if json {
            let all = json!({ "ok": all_ok, "instances": per, "total": total });
            return Ok((all_ok, format!("{all}\n")));
        }
        let n = self.instances.len();
        let figure = |k: &str| total.get(k).and_then(Value::as_u64).unwrap_or(0);
        text.push_str(&format!(
            "== all {n} instances: connections {} sessions {} logins {} frames {} records {}\n",
            figure("connections"),
            figure("sessions"),
            figure("logins"),
            figure("frames"),
            figure("records"),
        ));
        Ok((all_ok, text))
    }

    /// The badges online on every instance, each with the instance's address.
    fn devices(&mut self, json: bool, command: &str) -> Result<(bool, String), ClientError> {
        let mut all_ok = true;
        let mut list = Vec::new();
        let mut text = String::new();
        for (addr, client) in &mut self.instances {
            let (ok, answer) = client.command(&format!("json {command}"))?;
            all_ok &= ok;
            let v = parse(&answer);
            for mut d in v["devices"].as_array().cloned().unwrap_or_default() {
                d["instance"] = json!(addr);
                list.push(d);
            }
            if !json {
                let (_, shown) = client.command(command)?;
                for l in shown.lines().filter(|l| *l != "no badges online") {
                    text.push_str(&format!("{l} instance {addr}\n"));
                }
            }
        }
        if json {
            return Ok((
                all_ok,
                format!("{}\n", json!({ "ok": all_ok, "devices": list })),
            ));
        }
        if text.is_empty() {
            text = "no badges online\n".into();
        }
        Ok((all_ok, text))
    }
}

fn parse(answer: &str) -> Value {
    serde_json::from_str(answer.trim()).unwrap_or_else(|_| json!(answer.trim()))
}

/// Adds the numbers of `from` into `into`, key by key (nested objects too).
fn add_numbers(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => add_numbers(a, b),
            (Some(a), Value::Number(b)) if a.is_number() => {
                *a = match (a.as_u64(), b.as_u64()) {
                    (Some(x), Some(y)) => json!(x + y),
                    _ => json!(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
                };
            }
            (None, Value::Number(_) | Value::Object(_)) => {
                into.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// The answer for a badge no instance holds: a command for an offline badge
/// waits on one instance only, for the badge to come back to that one.
fn not_online(json: bool, imei: Imei, n: usize) -> String {
    let msg = format!(
        "{imei} is online on none of the {n} instances; a command for an offline badge waits on one instance only: give the --control of the instance it will reconnect to"
    );
    if json {
        format!("{}\n", json!({ "ok": false, "error": msg }))
    } else {
        format!("error: {msg}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_key_by_key() {
        let mut total = Map::new();
        let a = json!({"connections": 2, "frames": {"login": 1}, "name": "x"});
        let b = json!({"connections": 3, "frames": {"login": 4, "gps": 1}, "ratio": 0.5});
        add_numbers(&mut total, a.as_object().unwrap());
        add_numbers(&mut total, b.as_object().unwrap());
        assert_eq!(
            Value::Object(total),
            json!({"connections": 5, "frames": {"login": 5, "gps": 1}, "ratio": 0.5})
        );
    }
}
