//! Failed authentication is rate-limited per client address, on the HTTP API and
//! the S3 API alike, so keys and tokens cannot be guessed by trying: after
//! `api.max_auth_failures` failures within `api.auth_lockout_seconds`, every
//! request from that address is answered 429 (with `Retry-After`) until the
//! window has passed — a right key too, or guessing would go on — and the lockout
//! is logged once. Kept in memory, per node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Addresses tracked at most; beyond it, windows that have passed are dropped.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    logged: bool,
}

/// Cheap `Clone` handle, shared by the API and S3 listeners.
#[derive(Debug, Clone)]
pub struct AuthThrottle {
    by_addr: Arc<Mutex<HashMap<IpAddr, Window>>>,
    max_failures: u32,
    window: Duration,
}

impl AuthThrottle {
    /// Locks an address out after `max_failures` failures within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            by_addr: Arc::default(),
            max_failures,
            window,
        }
    }

    /// `Err(retry after)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = lock(&self.by_addr);
        match map.get(&ip) {
            Some(w) if w.failures >= self.max_failures => {
                let ends = w.started + self.window;
                if now < ends { Err(ends - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip` on `listener` (`API`, `S3`).
    pub fn failed(&self, ip: IpAddr, listener: &str) {
        self.failed_at(ip, listener, Instant::now());
    }

    fn failed_at(&self, ip: IpAddr, listener: &str, now: Instant) {
        let mut map = lock(&self.by_addr);
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.started) < window);
        }
        let w = map.entry(ip).or_insert(Window {
            started: now,
            failures: 0,
            logged: false,
        });
        if now.duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
                logged: false,
            };
        }
        w.failures = w.failures.saturating_add(1);
        if w.failures >= self.max_failures && !w.logged {
            w.logged = true;
            tracing::warn!(
                client = %ip,
                failures = w.failures,
                seconds = self.window.as_secs(),
                "{listener}: {} failed authentications from {ip}; refusing it until the window ends",
                w.failures
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_out_after_the_limit_until_its_window_ends() {
        let t = AuthThrottle::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..2 {
            t.failed_at(a, "API", start);
        }
        assert_eq!(t.check_at(a, start), Ok(()));
        t.failed_at(a, "API", start);
        assert_eq!(
            t.check_at(a, start + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(t.check_at(b, start), Ok(()), "another address is not affected");
        assert_eq!(t.check_at(a, start + Duration::from_secs(60)), Ok(()));
        // A failure after the window starts a new count.
        t.failed_at(a, "API", start + Duration::from_secs(61));
        assert_eq!(t.check_at(a, start + Duration::from_secs(61)), Ok(()));
    }
}
