//! A limit on password attempts per client address, beside the per-account lockout. The
//! lockout stops guessing one account's password; it does nothing against one password tried
//! on many accounts (spraying), and every attempt costs an argon2 hash. So each address gets
//! `sessions.signin_attempts_per_minute` password attempts a minute (the sign-in page and
//! the admin API's token endpoint together, successful ones included), as a burst that
//! refills evenly; over it, the request is refused before any account is looked up.
//!
//! The address is the one the audit log records (`trusted_proxies` decides whether
//! `X-Forwarded-For` is believed); IPv6 addresses count per /64, the block one subscriber
//! usually holds. The count is per instance, in memory: with N instances behind a load
//! balancer an address gets up to N times the limit, and a restart forgets it.

use crate::clock::SharedClock;
use governor::clock::Clock as RateClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The service's clock for the limiter, so that tests move its time as they move the rest.
#[derive(Clone)]
struct ServiceClock(SharedClock);

impl RateClock for ServiceClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Duration::from_millis(
            u64::try_from(self.0.now_ms()).unwrap_or(0),
        ))
    }
}

type Limiter = RateLimiter<String, HashMapStateStore<String>, ServiceClock, NoOpMiddleware<Nanos>>;

/// How many attempts between two sweeps of addresses whose budget is full again.
const SWEEP_EVERY: u32 = 1024;

pub struct SignInThrottle {
    /// None: no limit (`signin_attempts_per_minute = 0`).
    limiter: Option<Limiter>,
    clock: ServiceClock,
    since_sweep: AtomicU32,
}

impl SignInThrottle {
    pub fn new(per_minute: u32, clock: SharedClock) -> SignInThrottle {
        let clock = ServiceClock(clock);
        SignInThrottle {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::hashmap_with_clock(Quota::per_minute(n), clock.clone())),
            clock,
            since_sweep: AtomicU32::new(0),
        }
    }

    /// Counts one password attempt from `ip` (as recorded in the audit log). `Err` carries
    /// the whole seconds to wait before the next attempt is counted.
    pub fn attempt(&self, ip: Option<&str>) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.since_sweep.fetch_add(1, Ordering::Relaxed) >= SWEEP_EVERY {
            self.since_sweep.store(0, Ordering::Relaxed);
            limiter.retain_recent();
        }
        limiter.check_key(&key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The address an attempt counts against: IPv4 as is, IPv6 by its /64.
fn key(ip: Option<&str>) -> String {
    // `to_canonical`: an IPv4-mapped IPv6 address counts as its IPv4 address.
    match ip
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
    {
        Some(IpAddr::V6(v6)) => ipnet::Ipv6Net::new(v6, 64)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| v6.to_string()),
        Some(ip) => ip.to_string(),
        // No address (not over TCP): one shared budget rather than none.
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn an_address_gets_its_attempts_then_waits_for_the_refill() {
        let clock = ManualClock::default();
        let throttle = SignInThrottle::new(6, Arc::new(clock.clone()));
        for _ in 0..6 {
            assert_eq!(throttle.attempt(Some("198.51.100.7")), Ok(()));
        }
        // One attempt comes back every 10 s (6 a minute).
        assert_eq!(throttle.attempt(Some("198.51.100.7")), Err(10));
        // Another address has its own budget.
        assert_eq!(throttle.attempt(Some("198.51.100.8")), Ok(()));
        clock.advance_ms(4_000);
        assert_eq!(throttle.attempt(Some("198.51.100.7")), Err(6));
        clock.advance_ms(6_000);
        assert_eq!(throttle.attempt(Some("198.51.100.7")), Ok(()));
        assert_eq!(throttle.attempt(Some("198.51.100.7")), Err(10));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key(Some("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(key(Some("2001:db8:1:2:bbbb::9")), "2001:db8:1:2::/64");
        assert_eq!(key(Some("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(key(Some("192.0.2.1")), "192.0.2.1");
        assert_eq!(key(None), "unknown");
    }

    #[test]
    fn zero_means_no_limit() {
        let throttle = SignInThrottle::new(0, Arc::new(ManualClock::default()));
        for _ in 0..1000 {
            assert_eq!(throttle.attempt(Some("192.0.2.1")), Ok(()));
        }
    }
}
