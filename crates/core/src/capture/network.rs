//! Audio streamed over the network by a softphone (the gRPC `CallIngest`
//! service): packets of encoded samples per channel, with sequence numbers.
//!
//! Unlike a sound card, a network peer can be made to wait: when a ring is
//! full the [`Inlet`] waits for room instead of dropping samples, the gRPC
//! stream stops being read, and HTTP/2 flow control pushes back on the
//! sender. A softphone sending faster than the pipeline runs is slowed down;
//! memory stays bounded by the rings.

use std::time::Duration;

use anyhow::Result;
use tokio::sync::oneshot;

use super::{AudioSource, Running, SourceFormat};
use crate::buffer::RingWriter;

/// How samples are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Signed 16-bit little-endian PCM.
    Pcm16Le,
    /// 32-bit little-endian float, -1.0..1.0.
    F32Le,
    /// G.711 µ-law.
    MuLaw,
    /// G.711 A-law.
    ALaw,
}

impl Encoding {
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Self::Pcm16Le => 2,
            Self::F32Le => 4,
            Self::MuLaw | Self::ALaw => 1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("{len} bytes is not a whole number of {encoding:?} samples ({width} bytes each)")]
    PartialSample {
        encoding: Encoding,
        len: usize,
        width: usize,
    },
    #[error("sequence jumps from {expected} to {got}: more than {max_gap_s} s of missing audio")]
    Jump { expected: u64, got: u64, max_gap_s: f64 },
}

/// The longest silence a sequence gap may stand for unless the inlet is
/// told otherwise ([`PendingInlet::max_gap`]).
pub const DEFAULT_MAX_GAP_S: f64 = 10.0;

/// Decodes one packet, appending its samples to `out`. F32LE may carry any
/// value (NaN, inf, 1e6); the ring repairs and counts those on the way in
/// (`sanitize.rs`), so one bad sample costs a click, not the packet.
pub fn decode(encoding: Encoding, data: &[u8], out: &mut Vec<f32>) -> Result<(), FrameError> {
    let width = encoding.bytes_per_sample();
    if data.len() % width != 0 {
        return Err(FrameError::PartialSample {
            encoding,
            len: data.len(),
            width,
        });
    }
    match encoding {
        Encoding::Pcm16Le => out.extend(
            data.chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
        ),
        Encoding::F32Le => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Encoding::MuLaw => out.extend(data.iter().map(|&b| f32::from(ulaw_to_linear(b)) / 32768.0)),
        Encoding::ALaw => out.extend(data.iter().map(|&b| f32::from(alaw_to_linear(b)) / 32768.0)),
    }
    Ok(())
}

/// G.711 µ-law expansion (ITU-T G.711, as in Sun's reference g711.c).
fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let t = ((i16::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

/// G.711 A-law expansion.
fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i16::from(a & 0x0F) << 4;
    match (a & 0x70) >> 4 {
        0 => t += 8,
        1 => t += 0x108,
        seg => t = (t + 0x108) << (seg - 1),
    }
    if a & 0x80 != 0 {
        t
    } else {
        -t
    }
}

/// The pipeline's side: an [`AudioSource`] whose audio comes from an [`Inlet`].
pub struct NetworkSource {
    format: SourceFormat,
    writers: oneshot::Sender<Vec<RingWriter>>,
    ended: std::sync::mpsc::Receiver<()>,
}

/// The network's side: where the service pushes decoded packets.
pub struct PendingInlet {
    encoding: Encoding,
    rate: u32,
    max_gap_s: f64,
    writers: oneshot::Receiver<Vec<RingWriter>>,
    ended: std::sync::mpsc::Sender<()>,
}

/// A source for `format`, and the inlet that feeds it once the call starts.
pub fn network_source(format: SourceFormat, encoding: Encoding) -> (NetworkSource, PendingInlet) {
    let (writers_tx, writers_rx) = oneshot::channel();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    let rate = format.sample_rate;
    (
        NetworkSource {
            format,
            writers: writers_tx,
            ended: ended_rx,
        },
        PendingInlet {
            encoding,
            rate,
            max_gap_s: DEFAULT_MAX_GAP_S,
            writers: writers_rx,
            ended: ended_tx,
        },
    )
}

impl AudioSource for NetworkSource {
    fn format(&self) -> SourceFormat {
        self.format.clone()
    }

    fn start(self: Box<Self>, writers: Vec<RingWriter>) -> Result<Box<dyn Running>> {
        self.writers
            .send(writers)
            .map_err(|_| anyhow::anyhow!("the network stream went away before the call started"))?;
        Ok(Box::new(NetworkRunning(self.ended)))
    }
}

struct NetworkRunning(std::sync::mpsc::Receiver<()>);

impl Running for NetworkRunning {
    fn wait(self: Box<Self>) -> Result<()> {
        // Nothing is ever sent: recv returns when the inlet is dropped.
        let _ = self.0.recv();
        Ok(())
    }
}

impl PendingInlet {
    /// The longest silence one sequence gap may stand for; a longer jump
    /// is refused ([`FrameError::Jump`]).
    pub fn max_gap(mut self, seconds: f64) -> Self {
        self.max_gap_s = seconds;
        self
    }

    /// Waits for the pipeline to start the source.
    pub async fn open(self) -> Result<Inlet> {
        let writers = self
            .writers
            .await
            .map_err(|_| anyhow::anyhow!("the call's pipeline did not start"))?;
        Ok(Inlet {
            encoding: self.encoding,
            rate: self.rate,
            max_gap_s: self.max_gap_s,
            channels: writers
                .into_iter()
                .map(|writer| ChannelInlet {
                    writer,
                    next_seq: 0,
                    samples: 0,
                    gaps: 0,
                    repeats: 0,
                })
                .collect(),
            scratch: Vec::new(),
            _ended: self.ended,
        })
    }
}

/// Feeds decoded packets into the call's rings. Dropping it ends the audio.
pub struct Inlet {
    encoding: Encoding,
    rate: u32,
    max_gap_s: f64,
    channels: Vec<ChannelInlet>,
    scratch: Vec<f32>,
    _ended: std::sync::mpsc::Sender<()>,
}

struct ChannelInlet {
    writer: RingWriter,
    next_seq: u64,
    samples: u64,
    gaps: u64,
    repeats: u64,
}

impl Inlet {
    /// Decodes packet `seq` of `channel` and writes it, waiting for room.
    /// A gap in the sequence is filled with silence (as long as the missing
    /// packets, assumed this packet's size); a repeat is dropped. Both are
    /// counted. A jump standing for more than `max_gap_s` of audio is
    /// refused: a peer that skips a billion numbers must not make up hours
    /// of call (nor, at `u64::MAX`, wrap the sequence). `channel` must be a
    /// valid index (checked by the caller).
    pub async fn push(&mut self, channel: usize, seq: u64, data: &[u8]) -> Result<(), FrameError> {
        self.scratch.clear();
        decode(self.encoding, data, &mut self.scratch)?;
        let rate = self.rate;
        let ch = &mut self.channels[channel];
        if seq < ch.next_seq {
            ch.repeats += 1;
            metrics::counter!("callwatch_ingest_repeated_packets_total").increment(1);
            return Ok(());
        }
        if seq > ch.next_seq {
            let missing = seq - ch.next_seq;
            let fill = missing.saturating_mul(self.scratch.len() as u64);
            let most = (self.max_gap_s * f64::from(rate)) as u64;
            // Counting packets too: a jump in packets of no samples fills nothing.
            if fill > most || missing > most {
                return Err(FrameError::Jump {
                    expected: ch.next_seq,
                    got: seq,
                    max_gap_s: self.max_gap_s,
                });
            }
            ch.gaps += missing;
            metrics::counter!("callwatch_ingest_missing_packets_total").increment(missing);
            self.scratch.splice(0..0, std::iter::repeat_n(0.0, fill as usize));
        }
        // No wrap: reaching u64::MAX takes a jump, refused above.
        ch.next_seq = seq.saturating_add(1);
        ch.samples += self.scratch.len() as u64;
        let mut rest = &self.scratch[..];
        while !rest.is_empty() {
            let n = ch.writer.vacant().min(rest.len());
            if n == 0 && ch.writer.reader_gone() {
                // The call's front end has gone (it ended or died): no room
                // will come, and the session reports why.
                return Ok(());
            }
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            ch.writer.write(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Call time of the audio received so far: the furthest channel.
    pub fn received_s(&self) -> f64 {
        self.channels.iter().map(|c| c.samples).max().unwrap_or(0) as f64 / self.rate as f64
    }

    /// Per channel, the sequence number expected next.
    pub fn next_seq(&self) -> Vec<u64> {
        self.channels.iter().map(|c| c.next_seq).collect()
    }

    /// Per channel: packets missing, packets repeated.
    pub fn gaps(&self) -> Vec<u64> {
        self.channels.iter().map(|c| c.gaps).collect()
    }

    pub fn repeats(&self) -> Vec<u64> {
        self.channels.iter().map(|c| c.repeats).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn g711_reference_values() {
        // Silence, and the extremes, from the G.711 tables.
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn partial_samples_are_refused_by_name() {
        let mut out = Vec::new();
        let err = decode(Encoding::Pcm16Le, &[1, 2, 3], &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "3 bytes is not a whole number of Pcm16Le samples (2 bytes each)"
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn gaps_are_filled_and_repeats_dropped() {
        let format = SourceFormat {
            sample_rate: 8000,
            channels: vec![crate::audio::Channel::Agent],
        };
        let (source, pending) = network_source(format, Encoding::MuLaw);
        let (writer, mut reader) = crate::buffer::ring(8000);
        let _running = Box::new(source).start(vec![writer]).unwrap();
        let mut inlet = pending.open().await.unwrap();
        let packet = [0x80u8; 160];
        inlet.push(0, 0, &packet).await.unwrap();
        inlet.push(0, 2, &packet).await.unwrap(); // packet 1 lost
        inlet.push(0, 2, &packet).await.unwrap(); // repeated
        assert_eq!((inlet.gaps(), inlet.repeats()), (vec![1], vec![1]));
        assert_eq!(inlet.received_s(), 480.0 / 8000.0);
        let mut got = Vec::new();
        reader.read_into(&mut got);
        assert_eq!(got.len(), 480);
        assert!(got[160..320].iter().all(|&s| s == 0.0) && got[320] > 0.9);
    }

    /// A full ring whose reader has gone (the call's front end ended or
    /// died) does not hold the adapter forever: the push returns.
    #[tokio::test]
    async fn a_push_does_not_wait_for_a_reader_that_is_gone() {
        let format = SourceFormat {
            sample_rate: 8000,
            channels: vec![crate::audio::Channel::Agent],
        };
        let (source, pending) = network_source(format, Encoding::MuLaw);
        let (writer, reader) = crate::buffer::ring(160);
        let _running = Box::new(source).start(vec![writer]).unwrap();
        let mut inlet = pending.open().await.unwrap();
        let packet = [0x80u8; 160];
        inlet.push(0, 0, &packet).await.unwrap(); // fills the ring
        drop(reader);
        let pushed = tokio::time::timeout(Duration::from_secs(5), inlet.push(0, 1, &packet)).await;
        assert!(matches!(pushed, Ok(Ok(()))), "the push kept waiting for room");
    }

    #[tokio::test]
    async fn a_jump_longer_than_the_gap_limit_is_refused_and_nothing_counted() {
        let format = SourceFormat {
            sample_rate: 8000,
            channels: vec![crate::audio::Channel::Agent],
        };
        let (source, pending) = network_source(format, Encoding::MuLaw);
        let (writer, mut reader) = crate::buffer::ring(8000 * 4);
        let _running = Box::new(source).start(vec![writer]).unwrap();
        let mut inlet = pending.max_gap(2.0).open().await.unwrap();
        let packet = [0x80u8; 160]; // 20 ms
        inlet.push(0, 0, &packet).await.unwrap();
        // 99 packets missing: 1.98 s, within the limit.
        inlet.push(0, 100, &packet).await.unwrap();
        assert_eq!(inlet.gaps(), [99]);
        for jump in [202, 1_000_000_101, u64::MAX] {
            let err = inlet.push(0, jump, &packet).await.unwrap_err();
            assert_eq!(
                err,
                FrameError::Jump {
                    expected: 101,
                    got: jump,
                    max_gap_s: 2.0
                },
                "{err}"
            );
        }
        // Packets of no samples stand for no silence, but count as packets.
        assert!(matches!(inlet.push(0, 50_000, &[]).await, Err(FrameError::Jump { .. })));
        assert_eq!((inlet.gaps(), inlet.received_s()), (vec![99], 101.0 * 0.02));
        let mut got = Vec::new();
        reader.read_into(&mut got);
        assert_eq!(got.len(), 101 * 160);
    }

    /// A float stream with NaN, inf and 1e6 reaches the ring as silence and
    /// clipped samples, counted; the packet is kept, not refused.
    #[tokio::test]
    async fn float_packets_with_bad_values_are_repaired_and_counted() {
        let format = SourceFormat {
            sample_rate: 16_000,
            channels: vec![crate::audio::Channel::Agent],
        };
        let (source, pending) = network_source(format, Encoding::F32Le);
        let (writer, mut reader) = crate::buffer::ring(1000);
        let stats = writer.stats().clone();
        let _running = Box::new(source).start(vec![writer]).unwrap();
        let mut inlet = pending.open().await.unwrap();
        let values = [0.25f32, f32::NAN, f32::INFINITY, -1e6, 1e6, -0.5, f32::NEG_INFINITY];
        let packet: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        inlet.push(0, 0, &packet).await.unwrap();
        let mut got = Vec::new();
        reader.read_into(&mut got);
        assert_eq!(got, [0.25, 0.0, 0.0, -1.0, 1.0, -0.5, 0.0]);
        assert_eq!(stats.silenced.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(stats.clipped.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    proptest! {
        // Fuzzing the frame decoder: any bytes, any encoding, never a panic;
        // either an error naming the problem or exactly len/width samples in range.
        // FUZZ_CASES=2000000 for a longer run than the test suite's.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000)
        ))]
        #[test]
        fn decoding_any_bytes_is_total(enc in 0..4usize, data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let encoding = [Encoding::Pcm16Le, Encoding::F32Le, Encoding::MuLaw, Encoding::ALaw][enc];
            let mut out = vec![0.5];
            match decode(encoding, &data, &mut out) {
                Ok(()) => {
                    prop_assert_eq!(out.len(), 1 + data.len() / encoding.bytes_per_sample());
                    if encoding != Encoding::F32Le {
                        prop_assert!(out.iter().all(|s| (-1.0..=1.0).contains(s)));
                    }
                }
                Err(FrameError::PartialSample { len, width, .. }) => prop_assert!(len % width != 0),
                Err(jump) => prop_assert!(false, "decoding knows no sequence: {}", jump),
            }
            if out.len() != 1 { prop_assert_eq!(out[0], 0.5) }
        }
    }
}
