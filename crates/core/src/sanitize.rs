//! The one check every sample passes where it enters callwatch (a recording,
//! a device callback, a network frame): a non-finite value (NaN, ±inf)
//! becomes silence and a value outside [-1, 1] is clipped, so nothing
//! downstream — resampler, voice detector, Whisper — ever sees one.
//!
//! Counting is plain integers here; the ring (`buffer.rs`) adds them to its
//! atomics once per write, which keeps the device callback real-time safe.

/// How many samples were repaired on the way in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Repairs {
    /// Non-finite samples replaced by 0.0.
    pub silenced: u64,
    /// Samples outside [-1, 1] clipped to the nearest bound.
    pub clipped: u64,
}

impl Repairs {
    /// Repairs one sample, counting what was done. No allocation or branch
    /// beyond the two checks, so it is fit for a real-time callback.
    #[inline]
    pub fn sample(&mut self, x: f32) -> f32 {
        if !x.is_finite() {
            self.silenced += 1;
            0.0
        } else if x.abs() > 1.0 {
            self.clipped += 1;
            x.clamp(-1.0, 1.0)
        } else {
            x
        }
    }

    /// Repairs `samples` in place.
    pub fn slice(&mut self, samples: &mut [f32]) {
        for s in samples {
            *s = self.sample(*s);
        }
    }

    pub fn add(&mut self, other: Repairs) {
        self.silenced += other.silenced;
        self.clipped += other.clipped;
    }

    pub fn any(&self) -> bool {
        self.silenced + self.clipped > 0
    }
}

/// The repaired value alone, for stages that guard themselves without
/// reporting (the resampler must not panic even on audio that bypassed entry).
#[inline]
pub fn clean(x: f32) -> f32 {
    Repairs::default().sample(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_is_silenced_and_out_of_range_clipped() {
        let mut r = Repairs::default();
        let mut s = [
            0.5,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            1e6,
            -1e6,
            1.0,
            -1.0,
            1.0001,
        ];
        r.slice(&mut s);
        assert_eq!(s, [0.5, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
        assert_eq!(
            r,
            Repairs {
                silenced: 3,
                clipped: 3
            }
        );
        assert!(r.any());
        assert!(!Repairs::default().any());
    }
}
