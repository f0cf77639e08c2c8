//! Slowing token guessing: failed token attempts are counted per peer IP
//! address; after [`ALLOWED`] in a [`WINDOW`], every request from that
//! address that carries a token is refused (RESOURCE_EXHAUSTED) until the
//! window ends, valid token or not, so a guesser learns nothing faster than
//! `ALLOWED` tries a minute. (A peer behind the same NAT as a guesser is
//! refused with it; the log says which address.)
//!
//! The table holds at most [`MAX_PEERS`] addresses: when full, windows that
//! are over are forgotten, and if none is, a new address is not tracked (an
//! attacker with that many addresses gains only its own tries).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts one address may make per window.
pub const ALLOWED: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_PEERS: usize = 100_000;

struct Window {
    opened: Instant,
    failures: u32,
}

#[derive(Default)]
pub struct Lockout {
    peers: Mutex<HashMap<IpAddr, Window>>,
}

impl Lockout {
    /// `Some(seconds left)` while `peer` is locked out.
    pub fn locked(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        let peers = self.peers.lock().expect("poisoned");
        let w = peers.get(&peer)?;
        let left = WINDOW
            .checked_sub(now.duration_since(w.opened))
            .filter(|left| !left.is_zero())?;
        (w.failures >= ALLOWED).then(|| left.as_secs().max(1))
    }

    /// Counts a failed attempt; returns the failures in `peer`'s window.
    pub fn failed(&self, peer: IpAddr, now: Instant) -> u32 {
        let mut peers = self.peers.lock().expect("poisoned");
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, w| now.duration_since(w.opened) < WINDOW);
            if peers.len() >= MAX_PEERS {
                return 1;
            }
        }
        let w = peers.entry(peer).or_insert(Window {
            opened: now,
            failures: 0,
        });
        if now.duration_since(w.opened) >= WINDOW {
            *w = Window {
                opened: now,
                failures: 0,
            };
        }
        w.failures += 1;
        w.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_after_the_allowed_failures_until_its_window_ends() {
        let lockout = Lockout::default();
        let (guesser, other) = ("10.0.0.9".parse().unwrap(), "10.0.0.10".parse().unwrap());
        let t0 = Instant::now();
        for n in 1..=ALLOWED {
            assert_eq!(lockout.locked(guesser, t0), None);
            assert_eq!(lockout.failed(guesser, t0), n);
        }
        assert_eq!(lockout.locked(guesser, t0), Some(60));
        assert_eq!(lockout.locked(other, t0), None, "only the guessing address");
        assert_eq!(lockout.locked(guesser, t0 + Duration::from_secs(59)), Some(1));
        let later = t0 + WINDOW;
        assert_eq!(lockout.locked(guesser, later), None);
        assert_eq!(lockout.failed(guesser, later), 1, "a new window");
    }
}
