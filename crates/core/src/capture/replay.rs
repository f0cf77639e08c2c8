//! Replaying a recorded call into the rings, paced like a live call or as
//! fast as the pipeline takes it.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{AudioSource, Running, SourceFormat};
use crate::audio::Recording;
use crate::buffer::RingWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Deliver audio as a live call would: 20 ms every 20 ms of wall time.
    RealTime,
    /// Deliver as fast as the rings have room (waiting, never dropping).
    Fast,
}

pub struct Replay {
    recording: Recording,
    pace: Pace,
}

impl Replay {
    pub fn new(recording: Recording, pace: Pace) -> Self {
        Self { recording, pace }
    }
}

/// Block delivered at a time: 20 ms, the usual packet size of telephony.
const BLOCK_S: f64 = 0.02;

impl AudioSource for Replay {
    fn format(&self) -> SourceFormat {
        SourceFormat {
            sample_rate: self.recording.sample_rate,
            channels: self.recording.channels.iter().map(|(c, _)| *c).collect(),
        }
    }

    fn start(self: Box<Self>, mut writers: Vec<RingWriter>) -> Result<Box<dyn Running>> {
        let Replay { recording, pace } = *self;
        let block = ((recording.sample_rate as f64 * BLOCK_S) as usize).max(1);
        let thread = std::thread::Builder::new().name("replay".into()).spawn(move || {
            let start = Instant::now();
            let len = recording.channels[0].1.len();
            let mut pos = 0;
            while pos < len {
                let end = (pos + block).min(len);
                match pace {
                    Pace::RealTime => {
                        let due = start + Duration::from_secs_f64(pos as f64 / recording.sample_rate as f64);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    Pace::Fast => {
                        while writers.iter().any(|w| w.vacant() < end - pos) {
                            // No room will ever come from a front end that
                            // has gone (ended or died): stop instead of waiting.
                            if writers.iter().any(RingWriter::reader_gone) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                for (writer, (_, samples)) in writers.iter_mut().zip(&recording.channels) {
                    writer.write(&samples[pos..end]);
                }
                pos = end;
            }
            // Dropping the writers closes the rings: end of call.
        })?;
        Ok(Box::new(ReplayRunning { thread }))
    }
}

struct ReplayRunning {
    thread: JoinHandle<()>,
}

impl Running for ReplayRunning {
    fn wait(self: Box<Self>) -> Result<()> {
        self.thread.join().map_err(|_| anyhow!("the replay thread panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Channel;
    use crate::buffer::ring;

    /// A fast replay into a ring whose reader has gone stops instead of
    /// waiting forever for room.
    #[test]
    fn fast_replay_stops_when_its_reader_is_gone() {
        let recording = Recording {
            sample_rate: 16_000,
            channels: vec![(Channel::Mono, vec![0.1; 16_000 * 10])],
            repairs: Default::default(),
        };
        let (writer, reader) = ring(1_000);
        let running = Box::new(Replay::new(recording, Pace::Fast))
            .start(vec![writer])
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(reader);
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || done_tx.send(running.wait().is_ok()));
        assert_eq!(
            done.recv_timeout(Duration::from_secs(5)),
            Ok(true),
            "the replay kept waiting for room"
        );
    }
}
