//! Live capture from sound devices with cpal.
//!
//! The agent is an input device (a headset microphone); the customer is a
//! second input device — typically the monitor of the output device, which
//! PulseAudio and PipeWire expose as an input — or channel 1 of one stereo
//! device that carries both parties (channel 0 is the agent).
//!
//! Real-time rule: the driver calls the data callback on its own thread with
//! a deadline of one period (a few ms). A callback that allocates, locks,
//! logs or makes a system call can miss it, and the device then overruns:
//! audio is lost before it reaches us. So the callback only de-interleaves into the channel rings
//! ([`deliver`]); when a ring is full the samples are counted as overrun and
//! dropped, never waited for. Everything that may block — opening devices,
//! choosing formats, reporting errors — happens outside it.

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{FromSample, SampleFormat, SizedSample, SupportedStreamConfig};

use callwatch_core::audio::Channel;
use callwatch_core::buffer::RingWriter;
use callwatch_core::capture::{AudioSource, Running, SourceFormat};

mod pace;
mod quiet_alsa;
mod running;
mod select;

use pace::Pacer;
use quiet_alsa::QuietAlsa;
use running::{own_streams, Capturing, Shared};
use select::{
    common_config, config_at, default_host, device_name, input_ranges, no_device, pick_device, scan, seen, Found,
};

/// An input device as `callwatch devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// What `--agent`/`--customer` match against (the backend's id is added
    /// in brackets when two devices share a name, as ALSA's hw/plughw do).
    pub name: String,
    pub is_default: bool,
    /// Of the default input configuration.
    pub channels: u16,
    /// Of the default input configuration.
    pub sample_rate: u32,
}

/// Input devices of the default host, with their default input format.
/// Devices that cannot be opened for input are left out.
pub fn list_input_devices() -> Result<Vec<DeviceInfo>> {
    let _quiet = QuietAlsa::new();
    let host = default_host()?;
    Ok(scan(&host)?.iter().map(Found::info).collect())
}

/// Rates tried, in order, when two devices must agree: 16 kHz is what the
/// transcriber wants (no resampling), 48 kHz what most hardware runs at.
const PREFERRED_RATES: [u32; 2] = [16_000, 48_000];

/// How long a backend that honours it may take to open a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a machine without sound devices can still run the live path.
const REPLAY_HINT: &str = ". Replay a recording with `callwatch monitor CALL.wav` instead";

/// Stream errors logged per capture before going quiet (an ALSA device that
/// keeps failing reports every period).
pub(crate) const ERRORS_LOGGED: u64 = 10;

/// Live capture from one stereo device or two input devices.
pub struct DeviceSource {
    inputs: Vec<Input>,
    sample_rate: u32,
    /// Set by the owner (a signal handler) to end the capture cleanly.
    stop_on: Option<&'static AtomicBool>,
}

/// One device stream and where its channels go.
pub(crate) struct Input {
    device: cpal::Device,
    pub(crate) label: String,
    config: SupportedStreamConfig,
    /// (device channel, writer index) — writer indices count from 0 within
    /// this input's own writers, so each stream owns only its rings.
    pub(crate) pick: Vec<(usize, usize)>,
}

impl DeviceSource {
    /// Opens the agent's device (`None`: the default input) and the
    /// customer's (`None`: the agent's device must have two channels and is
    /// used as one stereo device). A name matches a device exactly, else as
    /// a case-insensitive part of its name or backend id.
    ///
    /// Two devices run at one sample rate that both support (16 kHz, else
    /// 48 kHz, else the agent's default): the front end resamples each
    /// channel from the one source rate. A stereo device runs at its default
    /// configuration. `rate` asks for that sample rate instead (an error if
    /// a device cannot capture at it).
    pub fn open(agent: Option<&str>, customer: Option<&str>, rate: Option<u32>) -> Result<Self> {
        let _quiet = QuietAlsa::new();
        let host = default_host()?;
        // A host that cannot list its devices may still open its default.
        let found = scan(&host).unwrap_or_else(|e| {
            tracing::debug!("{e:#}");
            Vec::new()
        });
        let host_name = host.id().name();

        let (agent_device, agent_label) = match agent {
            Some(name) => pick_device(&found, name, "agent", host_name)?,
            None => match host.default_input_device() {
                Some(d) => {
                    let label = found
                        .iter()
                        .find(|f| f.device == d)
                        .map_or_else(|| device_name(&d), |f| f.name.clone());
                    (d, label)
                }
                None => return Err(no_device(host_name, &found, None)),
            },
        };
        let agent_default = match agent_device.default_input_config() {
            Ok(c) => c,
            Err(e) if agent.is_none() => return Err(no_device(host_name, &found, Some(&e))),
            Err(e) => bail!("cannot use {agent_label} for input: {e}"),
        };
        let agent_ranges = input_ranges(&agent_device);

        let inputs = match customer {
            None => {
                if agent_default.channels() < 2 {
                    bail!(
                        "{agent_label} has one channel, so it cannot carry both parties: name the customer's device \
                         with --customer (e.g. the monitor of the output device). Input devices: {}",
                        seen(&found)
                    );
                }
                let wanted = rate.unwrap_or(agent_default.sample_rate());
                let config = config_at(&agent_ranges, &agent_default, wanted, 2).ok_or_else(|| {
                    anyhow!("{agent_label}: no stereo input at {wanted} Hz in f32, i16, u16 or i32 samples")
                })?;
                tracing::info!(device = %agent_label, ?config, "capturing agent (left) and customer (right)");
                vec![Input {
                    device: agent_device,
                    label: agent_label,
                    config,
                    pick: vec![(0, 0), (1, 1)],
                }]
            }
            Some(name) => {
                let (customer_device, customer_label) = pick_device(&found, name, "customer", host_name)?;
                if customer_device == agent_device {
                    bail!("agent and customer both name {agent_label}; leave --customer out to use one stereo device");
                }
                let customer_default = customer_device
                    .default_input_config()
                    .map_err(|e| anyhow!("cannot use {customer_label} for input: {e}"))?;
                let customer_ranges = input_ranges(&customer_device);
                let (a, c) = common_config(
                    (&agent_ranges, &agent_default),
                    (&customer_ranges, &customer_default),
                    rate,
                )
                .ok_or_else(|| match rate {
                    Some(rate) => anyhow!("{agent_label} and {customer_label} cannot both capture at {rate} Hz"),
                    None => anyhow!(
                        "{agent_label} and {customer_label} have no sample rate in common (tried {}, {} and {} Hz)",
                        PREFERRED_RATES[0],
                        PREFERRED_RATES[1],
                        agent_default.sample_rate()
                    ),
                })?;
                tracing::info!(agent = %agent_label, customer = %customer_label, rate = a.sample_rate(), "capturing");
                vec![
                    Input {
                        device: agent_device,
                        label: agent_label,
                        config: a,
                        pick: vec![(0, 0)],
                    },
                    Input {
                        device: customer_device,
                        label: customer_label,
                        config: c,
                        pick: vec![(0, 0)],
                    },
                ]
            }
        };
        let sample_rate = inputs[0].config.sample_rate();
        Ok(Self {
            inputs,
            sample_rate,
            stop_on: None,
        })
    }

    /// Ends the capture cleanly (as a stop, not a failure) once `flag` is
    /// set — e.g. by a SIGINT handler, which may only store to an atomic.
    /// The capture thread looks at it every 20 ms.
    pub fn stop_on(mut self, flag: &'static AtomicBool) -> Self {
        self.stop_on = Some(flag);
        self
    }
}

impl AudioSource for DeviceSource {
    fn format(&self) -> SourceFormat {
        SourceFormat {
            sample_rate: self.sample_rate,
            channels: vec![Channel::Agent, Channel::Customer],
        }
    }

    /// Builds and starts the streams on a dedicated thread that owns them
    /// (`cpal::Stream` is not `Send` on every platform) and watches them
    /// until the capture is stopped or a device fails (`running.rs`);
    /// dropping the streams drops the callbacks and with them the writers,
    /// which closes the rings.
    fn start(self: Box<Self>, writers: Vec<RingWriter>) -> Result<Box<dyn Running>> {
        let wanted: usize = self.inputs.iter().map(|i| i.pick.len()).sum();
        if writers.len() != wanted {
            bail!("device capture delivers {wanted} channels, got {} rings", writers.len());
        }
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let inputs = self.inputs;
        let stop_on = self.stop_on;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || own_streams(inputs, writers, &thread_shared, stop_on, &ready_tx))
            .context("cannot start the capture thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Box::new(Capturing {
                shared,
                thread: Some(thread),
            })),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow!("the capture thread died while opening the devices")),
            },
        }
    }
}

pub(crate) fn build_stream(
    input: &Input,
    index: usize,
    writers: Vec<RingWriter>,
    shared: &Arc<Shared>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream> {
    let pacer = Pacer::new(input.config.sample_rate(), index, shared.clone());
    match input.config.sample_format() {
        SampleFormat::F32 => build::<f32>(input, writers, pacer, on_error),
        SampleFormat::I16 => build::<i16>(input, writers, pacer, on_error),
        SampleFormat::U16 => build::<u16>(input, writers, pacer, on_error),
        SampleFormat::I32 => build::<i32>(input, writers, pacer, on_error),
        other => bail!("{}: sample format {other} is not supported", input.label),
    }
}

fn build<T>(
    input: &Input,
    mut writers: Vec<RingWriter>,
    mut pacer: Pacer,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(input.config.channels());
    // Moved into the callback ready-made: nothing is allocated in there.
    let pick = input.pick.clone();
    input
        .device
        .build_input_stream(
            input.config.config(),
            move |data: &[T], _: &cpal::InputCallbackInfo| {
                if channels > 0 && pacer.admit(data.len() / channels) {
                    deliver(data, channels, &pick, &mut writers);
                }
            },
            on_error,
            Some(OPEN_TIMEOUT),
        )
        .with_context(|| format!("cannot open {} for capture ({:?})", input.label, input.config))
}

/// The data callback's whole job: copy channel `from` of each frame of the
/// interleaved `data` into `writers[to]` for every `(from, to)` in `pick`,
/// converted to f32. The ring repairs and counts what a misconfigured device
/// can hand over (16-bit data read as f32 gives NaN and 1e30): NaN/inf
/// become silence, overs are clipped to [-1, 1] (`sanitize.rs`).
///
/// Real-time safe: no allocation, lock, log or system call, and it never
/// waits — a full ring drops and counts the rest ([`RingWriter::write_iter`]).
/// It cannot panic either: a pick outside `device_channels` or `writers` is
/// skipped, and a trailing partial frame ignored.
pub fn deliver<T>(data: &[T], device_channels: usize, pick: &[(usize, usize)], writers: &mut [RingWriter])
where
    T: SizedSample,
    f32: FromSample<T>,
{
    if device_channels == 0 {
        return;
    }
    let frames = data.len() / device_channels;
    for &(from, to) in pick {
        if from >= device_channels {
            continue;
        }
        let Some(writer) = writers.get_mut(to) else {
            continue;
        };
        let samples = data
            .chunks_exact(device_channels)
            .map(|frame| f32::from_sample_(frame[from]));
        writer.write_iter(samples, frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwatch_core::buffer::ring;
    use std::sync::atomic::Ordering;

    /// The capture path without a device: a thread plays the driver, calling
    /// `deliver` with interleaved stereo i16 blocks of varying size as a
    /// callback would, while this thread drains both rings; each ring gets
    /// its channel, every sample, in order, scaled to [-1, 1].
    #[test]
    fn callback_path_splits_stereo_into_the_rings() {
        const FRAMES: i32 = 16_000;
        // Different wrapping ramps per channel, both signs: a swapped,
        // repeated or dropped sample shows.
        fn agent_at(k: i32) -> i16 {
            (k * 5) as i16
        }
        fn customer_at(k: i32) -> i16 {
            (-3 * k - 1) as i16
        }
        let (w0, mut r0) = ring(FRAMES as usize);
        let (w1, mut r1) = ring(FRAMES as usize);
        let driver = std::thread::spawn(move || {
            let mut writers = [w0, w1];
            let mut block = Vec::with_capacity(2 * 512);
            let mut next = 0i32;
            let mut size = 1;
            while next < FRAMES {
                block.clear();
                for k in next..(next + size).min(FRAMES) {
                    block.extend([agent_at(k), customer_at(k)]);
                }
                next += size;
                size = size % 480 + 37;
                deliver(&block, 2, &[(0, 0), (1, 1)], &mut writers);
                std::thread::yield_now();
            }
            writers
                .iter()
                .map(|w| w.stats().overrun.load(Ordering::Relaxed))
                .sum::<u64>()
        });
        let (mut agent, mut customer) = (Vec::new(), Vec::new());
        while !(r0.is_finished() && r1.is_finished()) {
            r0.read_into(&mut agent);
            r1.read_into(&mut customer);
        }
        assert_eq!(driver.join().unwrap(), 0);
        assert_eq!((agent.len(), customer.len()), (FRAMES as usize, FRAMES as usize));
        for k in 0..FRAMES {
            let i = k as usize;
            assert_eq!(agent[i], f32::from(agent_at(k)) / 32768.0, "agent sample {k}");
            assert_eq!(customer[i], f32::from(customer_at(k)) / 32768.0, "customer sample {k}");
        }
        assert!(agent.iter().chain(&customer).all(|s| (-1.0..1.0).contains(s)));
    }

    /// NaN, inf and huge floats from the driver arrive as silence and
    /// clipped samples, counted per ring.
    #[test]
    fn bad_float_samples_are_repaired_and_counted() {
        let (w0, mut r0) = ring(100);
        let (w1, mut r1) = ring(100);
        let mut writers = [w0, w1];
        let data = [f32::NAN, 0.5, 1e30, f32::INFINITY, -0.25, -1e6, 0.1, f32::NAN];
        deliver(&data, 2, &[(0, 0), (1, 1)], &mut writers);
        let (mut a, mut c) = (Vec::new(), Vec::new());
        r0.read_into(&mut a);
        r1.read_into(&mut c);
        assert_eq!(a, [0.0, 1.0, -0.25, 0.1]);
        assert_eq!(c, [0.5, 0.0, -1.0, 0.0]);
        let counts = |w: &RingWriter| {
            (
                w.stats().silenced.load(Ordering::Relaxed),
                w.stats().clipped.load(Ordering::Relaxed),
            )
        };
        assert_eq!(counts(&writers[0]), (1, 1));
        assert_eq!(counts(&writers[1]), (2, 1));
    }

    /// A full ring never blocks the callback: what does not fit is dropped
    /// and counted, what fits is kept in order.
    #[test]
    fn full_ring_counts_overruns_instead_of_blocking() {
        let (w0, mut r0) = ring(100);
        let (w1, mut r1) = ring(100);
        let mut writers = [w0, w1];
        let data: Vec<f32> = (0..600).map(|i| i as f32 / 1000.0).collect();
        deliver(&data, 2, &[(0, 0), (1, 1)], &mut writers);
        deliver(&data, 2, &[(0, 0), (1, 1)], &mut writers);
        for w in &writers {
            assert_eq!(w.stats().written.load(Ordering::Relaxed), 100);
            assert_eq!(w.stats().overrun.load(Ordering::Relaxed), 500);
        }
        let (mut a, mut c) = (Vec::new(), Vec::new());
        r0.read_into(&mut a);
        r1.read_into(&mut c);
        assert_eq!(a, data.iter().step_by(2).take(100).copied().collect::<Vec<_>>());
        assert_eq!(c, data.iter().skip(1).step_by(2).take(100).copied().collect::<Vec<_>>());
    }

    #[test]
    fn other_formats_and_channel_maps() {
        let (w0, mut r0) = ring(16);
        let (w1, mut r1) = ring(16);
        let mut writers = [w0, w1];
        // Four channels, channel 3 to writer 0 and channel 2 to writer 1.
        deliver(&[0u16, 0, 0, 32768, 0, 0, 65535, 0], 4, &[(3, 0), (2, 1)], &mut writers);
        deliver(&[i32::MIN, 0, 1 << 30, 0], 2, &[(0, 1)], &mut writers);
        deliver(&[2.0f32, -0.25, -3.0], 1, &[(0, 0)], &mut writers);
        // Out-of-range picks, no channels and a partial frame: skipped, no panic.
        deliver(&[1i16, 2, 3], 2, &[(5, 0), (0, 9)], &mut writers);
        deliver(&[i16::MIN, i16::MAX], 2, &[(0, 0), (1, 0)], &mut writers);
        deliver(&[1i16, 2, 3], 0, &[(0, 0)], &mut writers);
        let (mut a, mut c) = (Vec::new(), Vec::new());
        r0.read_into(&mut a);
        r1.read_into(&mut c);
        assert_eq!(a, vec![0.0, -1.0, 1.0, -0.25, -1.0, -1.0, 32767.0 / 32768.0]);
        assert_eq!(c, vec![-1.0, 65535.0 / 32768.0 - 1.0, -1.0, 0.5]);
    }

    /// On a machine without a sound card (servers, CI) opening fails with a
    /// clear error instead of a panic; with one, it may succeed or fail.
    #[test]
    fn no_device_is_a_clear_error() {
        let devices = std::panic::catch_unwind(list_input_devices).expect("listing devices must not panic");
        let opened = std::panic::catch_unwind(|| DeviceSource::open(None, None, None).map(|s| s.format()))
            .expect("opening devices must not panic");
        match (devices, opened) {
            (Ok(devices), Err(e)) if devices.is_empty() => {
                let msg = format!("{e:#}");
                assert!(msg.contains("no audio input device"), "{msg}");
                assert!(msg.contains("callwatch monitor"), "{msg}");
            }
            (_, Ok(format)) => assert_eq!(format.channels, vec![Channel::Agent, Channel::Customer]),
            // A machine with devices may still refuse (mono default, busy).
            _ => {}
        }
    }
}
