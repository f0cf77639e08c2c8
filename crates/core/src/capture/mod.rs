//! Audio sources: where a call's audio comes from.
//!
//! Every source — a recording replayed ([`replay`]), a sound device
//! (the `callwatch-device` crate), a softphone streaming over gRPC
//! ([`network`]) — does one thing: it writes each
//! channel's samples, at the source's own rate, into that channel's
//! [`RingWriter`]. Everything after the rings is the same code whatever the
//! source, so replaying a recording exercises exactly the live path.

pub mod network;
pub mod replay;

use anyhow::Result;

use crate::audio::Channel;
use crate::buffer::RingWriter;

/// What a source delivers: its sample rate and the party on each channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFormat {
    pub sample_rate: u32,
    pub channels: Vec<Channel>,
}

/// A running source. Dropping it stops the audio and closes the rings.
pub trait Running: Send {
    /// Blocks until the source has ended by itself (end of a recording).
    /// Live sources never end by themselves; they return when stopped.
    fn wait(self: Box<Self>) -> Result<()>;

    /// Overruns the source's own driver reported (audio lost before it
    /// reached the rings): a sound device's xruns. Read once the rings have
    /// closed, it is the final count.
    fn xruns(&self) -> u64 {
        0
    }
}

pub trait AudioSource {
    fn format(&self) -> SourceFormat;

    /// Starts delivering audio, one writer per channel in `format()` order.
    fn start(self: Box<Self>, writers: Vec<RingWriter>) -> Result<Box<dyn Running>>;
}
