//! Process limits (memlock for io_uring, open files) and the connection
//! limits enforced at accept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The kernel pins each shard's provided-buffer ring (a page) against the
/// soft memlock limit; this leaves room for them and for the kernel's own.
pub const MIN_MEMLOCK: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "the locked-memory limit (ulimit -l) is {soft} bytes, but io_uring needs at least {need}; \
         raising it failed ({reason}). Run `ulimit -l {need_kib}` (or set LimitMEMLOCK / memlock in \
         /etc/security/limits.conf) before starting badge-ingest"
    )]
    Memlock {
        soft: u64,
        need: u64,
        need_kib: u64,
        reason: String,
    },
}

fn getrlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes to the struct we pass.
    unsafe { libc::getrlimit(resource, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

fn setrlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(resource, &r) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes sure the shards' rings can start: raises the soft memlock limit towards the
/// hard one if needed, or explains how to fix it.
pub fn ensure_memlock() -> Result<u64, LimitError> {
    let (soft, hard) = getrlimit(libc::RLIMIT_MEMLOCK);
    if soft >= MIN_MEMLOCK {
        return Ok(soft);
    }
    let target = if hard >= MIN_MEMLOCK {
        MIN_MEMLOCK
    } else {
        hard
    };
    let raised = if target >= MIN_MEMLOCK {
        setrlimit(libc::RLIMIT_MEMLOCK, target, hard).map_err(|e| e.to_string())
    } else {
        Err(format!("the hard limit is only {hard} bytes"))
    };
    match raised {
        Ok(()) => Ok(target),
        Err(reason) => Err(LimitError::Memlock {
            soft,
            need: MIN_MEMLOCK,
            need_kib: MIN_MEMLOCK / 1024,
            reason,
        }),
    }
}

/// Raises the soft open-files limit to the hard one; returns (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    let (soft, hard) = getrlimit(libc::RLIMIT_NOFILE);
    if soft < hard && setrlimit(libc::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    (soft, hard)
}

/// Connection counts shared by all shards; touched only at accept, login
/// and close.
#[derive(Debug)]
pub struct ConnectionLimits {
    all: Count,
    /// Connections that have not logged in yet: what anyone on the
    /// internet can open without knowing an IMEI.
    prelogin: Count,
}

/// Open connections, in total and per peer IP.
#[derive(Debug)]
struct Count {
    max: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Count {
    fn new(max: usize, max_per_ip: usize) -> Self {
        Self {
            max,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        if self.max_per_ip > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        Ok(())
    }

    fn give_back(&self, ip: IpAddr) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if self.max_per_ip > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
    Prelogin,
    PreloginPerIp,
}

impl ConnectionLimits {
    /// `max` and `max_per_ip` for all connections, `prelogin` and
    /// `prelogin_per_ip` for those not logged in yet (0 per IP: no limit).
    pub fn new(
        max: usize,
        max_per_ip: usize,
        prelogin: usize,
        prelogin_per_ip: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            all: Count::new(max, max_per_ip),
            prelogin: Count::new(prelogin, prelogin_per_ip),
        })
    }

    pub fn open(&self) -> usize {
        self.all.open.load(Ordering::Relaxed)
    }

    /// Connections not logged in yet.
    pub fn prelogin(&self) -> usize {
        self.prelogin.open.load(Ordering::Relaxed)
    }

    /// A permit for one more connection from `ip`, released when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        self.all.take(ip)?;
        if let Err(why) = self.prelogin.take(ip) {
            self.all.give_back(ip);
            return Err(match why {
                Refused::PerIp => Refused::PreloginPerIp,
                _ => Refused::Prelogin,
            });
        }
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
            prelogin: true,
        })
    }
}

/// Holds one connection's place in the limits. `Send`, so it travels with a
/// socket handed to another shard.
#[derive(Debug)]
pub struct ConnPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    prelogin: bool,
}

impl ConnPermit {
    pub fn is_prelogin(&self) -> bool {
        self.prelogin
    }

    /// The connection logged in: it leaves the pre-login budget.
    pub fn logged_in(&mut self) {
        if std::mem::take(&mut self.prelogin) {
            self.limits.prelogin.give_back(self.ip);
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.logged_in();
        self.limits.all.give_back(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelogin_places_are_given_back_at_login() {
        let l = ConnectionLimits::new(10, 10, 2, 1);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let mut p1 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::PreloginPerIp);
        let _p2 = l.admit(b).unwrap();
        assert_eq!(
            l.admit("127.0.0.3".parse().unwrap()).unwrap_err(),
            Refused::Prelogin
        );
        assert_eq!((l.open(), l.prelogin()), (2, 2));
        p1.logged_in();
        p1.logged_in();
        assert_eq!((l.open(), l.prelogin()), (2, 1));
        let p3 = l.admit(a).unwrap();
        drop(p1);
        drop(p3);
        assert_eq!((l.open(), l.prelogin()), (1, 1));
    }

    #[test]
    fn permits_count_and_release() {
        let l = ConnectionLimits::new(2, 1, 100, 0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::PerIp);
        let p2 = l.admit(b).unwrap();
        assert_eq!(
            l.admit("127.0.0.3".parse().unwrap()).unwrap_err(),
            Refused::Total
        );
        drop(p1);
        assert_eq!(l.open(), 1);
        let _p3 = l.admit(a).unwrap();
        drop(p2);
        assert_eq!(l.open(), 1);
    }
}
