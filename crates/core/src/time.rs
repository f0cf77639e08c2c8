//! Call time and wall time, as every stage writes them.

use std::fmt;

/// Call time as people read it: `01:03.3` (minutes, seconds, tenths).
pub struct CallClock(pub f64);

impl fmt::Display for CallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 * 10.0).round() as u64;
        write!(f, "{:02}:{:02}.{}", tenths / 600, tenths / 10 % 60, tenths % 10)
    }
}

/// Call time rounded to the millisecond, as JSON lines carry it.
pub fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// Wall-clock milliseconds since the Unix epoch (store and feed timestamps).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
