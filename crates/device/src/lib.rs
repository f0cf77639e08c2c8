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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, SupportedStreamConfig, SupportedStreamConfigRange};

use callwatch_core::audio::Channel;
use callwatch_core::buffer::RingWriter;
use callwatch_core::capture::{AudioSource, Running, SourceFormat};

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
const ERRORS_LOGGED: u64 = 10;

/// Live capture from one stereo device or two input devices.
pub struct DeviceSource {
    inputs: Vec<Input>,
    sample_rate: u32,
}

/// One device stream and where its channels go.
struct Input {
    device: cpal::Device,
    label: String,
    config: SupportedStreamConfig,
    /// (device channel, writer index) — writer indices count from 0 within
    /// this input's own writers, so each stream owns only its rings.
    pick: Vec<(usize, usize)>,
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
    /// configuration.
    pub fn open(agent: Option<&str>, customer: Option<&str>) -> Result<Self> {
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
                let config = config_at(&agent_ranges, &agent_default, agent_default.sample_rate(), 2)
                    .ok_or_else(|| anyhow!("{agent_label}: no stereo input in f32, i16, u16 or i32 samples"))?;
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
                let (a, c) = common_config((&agent_ranges, &agent_default), (&customer_ranges, &customer_default))
                    .ok_or_else(|| {
                        anyhow!(
                            "{agent_label} and {customer_label} have no sample rate in common (tried {}, {} and {} Hz)",
                            PREFERRED_RATES[0],
                            PREFERRED_RATES[1],
                            agent_default.sample_rate()
                        )
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
        Ok(Self { inputs, sample_rate })
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
    /// (`cpal::Stream` is not `Send` on every platform) and parks until the
    /// capture is stopped or a device fails; dropping the streams drops the
    /// callbacks and with them the writers, which closes the rings.
    fn start(self: Box<Self>, writers: Vec<RingWriter>) -> Result<Box<dyn Running>> {
        let wanted: usize = self.inputs.iter().map(|i| i.pick.len()).sum();
        if writers.len() != wanted {
            bail!("device capture delivers {wanted} channels, got {} rings", writers.len());
        }
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let inputs = self.inputs;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || own_streams(inputs, writers, &thread_shared, &ready_tx))
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

/// State shared by the capture thread, the error callbacks and [`Capturing`].
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Stream errors reported by the backends (xruns included).
    errors: AtomicU64,
    /// The first error that ended a stream, with its input's index.
    fatal: OnceLock<(usize, cpal::Error)>,
}

/// Body of the capture thread: open, report readiness, park, tear down.
fn own_streams(
    inputs: Vec<Input>,
    writers: Vec<RingWriter>,
    shared: &Arc<Shared>,
    ready: &mpsc::SyncSender<Result<()>>,
) -> Result<()> {
    let opened = {
        let _quiet = QuietAlsa::new();
        let mut writers = writers.into_iter();
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                // Each stream gets only its own rings: one producer per ring.
                let own: Vec<RingWriter> = writers.by_ref().take(input.pick.len()).collect();
                let stream = build_stream(input, own, error_callback(index, &input.label, shared.clone()))?;
                stream
                    .play()
                    .with_context(|| format!("cannot start capture on {}", input.label))?;
                Ok(stream)
            })
            .collect::<Result<Vec<cpal::Stream>>>()
    };
    let streams = match opened {
        Ok(streams) => streams,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    while !shared.stop.load(Ordering::Acquire) && shared.fatal.get().is_none() {
        std::thread::park();
    }
    drop(streams);
    let errors = shared.errors.load(Ordering::Relaxed);
    if errors > 0 {
        tracing::info!(errors, "capture stopped after stream errors");
    }
    match shared.fatal.get() {
        Some((index, e)) => Err(anyhow!("audio device {} stopped: {e}", inputs[*index].label)),
        None => Ok(()),
    }
}

/// The error callback runs on the backend's thread, but outside the data
/// path: it counts, logs the first few, and on an error that ends the stream
/// records it and wakes the capture thread, which stops the whole capture.
fn error_callback(index: usize, label: &str, shared: Arc<Shared>) -> impl FnMut(cpal::Error) + Send + 'static {
    let label = label.to_owned();
    let owner = std::thread::current();
    move |err: cpal::Error| {
        let count = shared.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if count <= ERRORS_LOGGED {
            tracing::warn!(device = %label, count, "audio stream error: {err}");
        }
        if ends_stream(err.kind()) {
            let _ = shared.fatal.set((index, err));
            owner.unpark();
        }
    }
}

fn ends_stream(kind: cpal::ErrorKind) -> bool {
    use cpal::ErrorKind::*;
    matches!(
        kind,
        DeviceNotAvailable | HostUnavailable | StreamInvalidated | PermissionDenied
    )
}

/// The running capture. `wait` returns when it is stopped or a device fails.
struct Capturing {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Running for Capturing {
    fn wait(mut self: Box<Self>) -> Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("the capture thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn build_stream(
    input: &Input,
    writers: Vec<RingWriter>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream> {
    match input.config.sample_format() {
        SampleFormat::F32 => build::<f32>(input, writers, on_error),
        SampleFormat::I16 => build::<i16>(input, writers, on_error),
        SampleFormat::U16 => build::<u16>(input, writers, on_error),
        SampleFormat::I32 => build::<i32>(input, writers, on_error),
        other => bail!("{}: sample format {other} is not supported", input.label),
    }
}

fn build<T>(
    input: &Input,
    mut writers: Vec<RingWriter>,
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
            move |data: &[T], _: &cpal::InputCallbackInfo| deliver(data, channels, &pick, &mut writers),
            on_error,
            Some(OPEN_TIMEOUT),
        )
        .with_context(|| format!("cannot open {} for capture ({:?})", input.label, input.config))
}

/// The data callback's whole job: copy channel `from` of each frame of the
/// interleaved `data` into `writers[to]` for every `(from, to)` in `pick`,
/// converted to f32 in [-1, 1].
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
            .map(|frame| f32::from_sample_(frame[from]).clamp(-1.0, 1.0));
        writer.write_iter(samples, frames);
    }
}

/// An input device of the host, as scanned once per `open`/listing.
struct Found {
    device: cpal::Device,
    name: String,
    /// The backend's id (ALSA: the PCM name, e.g. `hw:CARD=USB,DEV=0`).
    id: String,
    is_default: bool,
    config: SupportedStreamConfig,
}

impl Found {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.name.clone(),
            is_default: self.is_default,
            channels: self.config.channels(),
            sample_rate: self.config.sample_rate(),
        }
    }
}

/// cpal's `default_host()` panics when its host cannot start (ALSA without a
/// readable configuration); this asks for the same host and fails instead.
/// The first available host is the default one for the hosts this crate
/// enables (ALSA, WASAPI, CoreAudio).
fn default_host() -> Result<cpal::Host> {
    let mut last = None;
    for id in cpal::available_hosts() {
        match cpal::host_from_id(id) {
            Ok(host) => return Ok(host),
            Err(e) => last = Some(format!("{}: {e}", id.name())),
        }
    }
    bail!(
        "no audio input device found (no audio host could start{}; devices seen: none){REPLAY_HINT}",
        last.map(|e| format!(": {e}")).unwrap_or_default()
    )
}

/// The host's input devices that report a default input configuration (the
/// default device first if enumeration misses it), with unique names.
fn scan(host: &cpal::Host) -> Result<Vec<Found>> {
    let default = host.default_input_device();
    let mut devices: Vec<cpal::Device> = host
        .input_devices()
        .with_context(|| format!("cannot list the {} input devices", host.id().name()))?
        .collect();
    if let Some(d) = &default {
        if !devices.contains(d) {
            devices.insert(0, d.clone());
        }
    }
    let alsa = host.id().name() == "ALSA";
    let mut found: Vec<Found> = devices
        .into_iter()
        .filter_map(|device| {
            let id = device.id().map(|id| id.id().to_owned()).unwrap_or_default();
            // ALSA's `null` device "captures" endless silence: never a call.
            if alsa && id == "null" {
                return None;
            }
            let config = device.default_input_config().ok()?;
            Some(Found {
                name: device_name(&device),
                id,
                is_default: default.as_ref() == Some(&device),
                config,
                device,
            })
        })
        .collect();
    let names: Vec<String> = found.iter().map(|f| f.name.clone()).collect();
    for f in &mut found {
        if names.iter().filter(|n| **n == f.name).count() > 1 && !f.id.is_empty() {
            f.name = format!("{} [{}]", f.name, f.id);
        }
    }
    Ok(found)
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .or_else(|_| device.id().map(|id| id.id().to_owned()))
        .unwrap_or_else(|_| "(unnamed device)".into())
}

/// The devices found, for error messages.
fn seen(found: &[Found]) -> String {
    if found.is_empty() {
        return "none".into();
    }
    found
        .iter()
        .map(|f| format!("{} ({} ch, {} Hz)", f.name, f.config.channels(), f.config.sample_rate()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_device(host: &str, found: &[Found], cause: Option<&cpal::Error>) -> anyhow::Error {
    // With nothing seen the backend's reason adds nothing; with devices
    // seen it says why the default one is unusable.
    let cause = match cause {
        Some(e) if !found.is_empty() => format!("; default input: {e}"),
        _ => String::new(),
    };
    anyhow!(
        "no audio input device found (host {host}; devices seen: {}{cause}){REPLAY_HINT}",
        seen(found)
    )
}

fn pick_device(found: &[Found], wanted: &str, role: &str, host: &str) -> Result<(cpal::Device, String)> {
    let candidates: Vec<(&str, &str)> = found.iter().map(|f| (f.name.as_str(), f.id.as_str())).collect();
    match match_device(&candidates, wanted) {
        Some(i) => Ok((found[i].device.clone(), found[i].name.clone())),
        None => bail!(
            "no audio input device matches {wanted:?} for the {role} (host {host}; devices seen: {}){}",
            seen(found),
            if found.is_empty() { REPLAY_HINT } else { "" }
        ),
    }
}

/// Index of the device `wanted` names among `(name, id)` pairs: an exact
/// name or id first, then case-insensitively, then as a case-insensitive
/// part of either; the first in enumeration order wins each step.
fn match_device(candidates: &[(&str, &str)], wanted: &str) -> Option<usize> {
    let lower = wanted.to_lowercase();
    let position = |test: &dyn Fn(&str) -> bool| candidates.iter().position(|(n, id)| test(n) || test(id));
    position(&|s| s == wanted)
        .or_else(|| position(&|s| s.to_lowercase() == lower))
        .or_else(|| position(&|s| !lower.is_empty() && s.to_lowercase().contains(&lower)))
}

fn input_ranges(device: &cpal::Device) -> Vec<SupportedStreamConfigRange> {
    device
        .supported_input_configs()
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// Sample formats [`deliver`] is built for.
fn is_handled(format: SampleFormat) -> bool {
    matches!(
        format,
        SampleFormat::F32 | SampleFormat::I16 | SampleFormat::U16 | SampleFormat::I32
    )
}

/// A configuration at `rate` with at least `min_channels` in a handled
/// format: the default if it fits, else the closest range (same channel
/// count and format as the default first, then cpal's own preference).
fn config_at(
    ranges: &[SupportedStreamConfigRange],
    default: &SupportedStreamConfig,
    rate: u32,
    min_channels: u16,
) -> Option<SupportedStreamConfig> {
    if default.sample_rate() == rate && default.channels() >= min_channels && is_handled(default.sample_format()) {
        return Some(*default);
    }
    let likeness = |r: &SupportedStreamConfigRange| {
        (
            r.channels() == default.channels(),
            r.sample_format() == default.sample_format(),
        )
    };
    ranges
        .iter()
        .filter(|r| r.channels() >= min_channels && is_handled(r.sample_format()) && r.contains_rate(rate))
        .max_by(|a, b| likeness(a).cmp(&likeness(b)).then_with(|| a.cmp_default_heuristics(b)))
        .and_then(|r| r.try_with_sample_rate(rate))
}

/// Configurations for two devices at one rate: 16 kHz, 48 kHz, the agent's
/// default, then the customer's default.
fn common_config(
    agent: (&[SupportedStreamConfigRange], &SupportedStreamConfig),
    customer: (&[SupportedStreamConfigRange], &SupportedStreamConfig),
) -> Option<(SupportedStreamConfig, SupportedStreamConfig)> {
    let rates = [
        PREFERRED_RATES[0],
        PREFERRED_RATES[1],
        agent.1.sample_rate(),
        customer.1.sample_rate(),
    ];
    rates.into_iter().find_map(|rate| {
        Some((
            config_at(agent.0, agent.1, rate, 1)?,
            config_at(customer.0, customer.1, rate, 1)?,
        ))
    })
}

/// Routes alsa-lib's own stderr chatter ("cannot find card '0'", …) on this
/// thread into a buffer that is logged at debug level when the guard drops,
/// so a missing sound card shows as one clear error, not a screen of noise.
struct QuietAlsa {
    #[cfg(target_os = "linux")]
    buffer: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl QuietAlsa {
    fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            buffer: alsa::Output::local_error_handler().ok(),
        }
    }
}

impl Drop for QuietAlsa {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(buffer) = &self.buffer {
            let text = buffer.borrow().to_string();
            if !text.trim().is_empty() {
                tracing::debug!(target: "alsa", "{}", text.trim_end());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwatch_core::buffer::ring;
    use cpal::SupportedBufferSize;

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

    #[test]
    fn names_match_exactly_then_loosely() {
        let devices = [
            ("Default Audio Device", "default"),
            (
                "USB Headset, USB Audio [hw:CARD=Headset,DEV=0]",
                "hw:CARD=Headset,DEV=0",
            ),
            (
                "USB Headset, USB Audio [plughw:CARD=Headset,DEV=0]",
                "plughw:CARD=Headset,DEV=0",
            ),
            ("Monitor of Built-in Audio", "monitor"),
        ];
        assert_eq!(match_device(&devices, "plughw:CARD=Headset,DEV=0"), Some(2));
        assert_eq!(match_device(&devices, "DEFAULT"), Some(0));
        assert_eq!(match_device(&devices, "headset"), Some(1));
        assert_eq!(match_device(&devices, "monitor of"), Some(3));
        assert_eq!(match_device(&devices, "speaker"), None);
        assert_eq!(match_device(&devices, ""), None);
    }

    #[test]
    fn two_devices_agree_on_a_rate() {
        let range = |ch, lo, hi, f| SupportedStreamConfigRange::new(ch, lo, hi, SupportedBufferSize::Unknown, f);
        let default = |ch, rate, f| SupportedStreamConfig::new(ch, rate, SupportedBufferSize::Unknown, f);
        // A headset that does anything, a monitor at 44.1/48 kHz in i16.
        let headset = [range(1, 8_000, 96_000, SampleFormat::F32)];
        let headset_default = default(1, 48_000, SampleFormat::F32);
        let monitor = [
            range(2, 44_100, 48_000, SampleFormat::I16),
            range(2, 44_100, 48_000, SampleFormat::I24),
        ];
        let monitor_default = default(2, 44_100, SampleFormat::I16);
        let (a, c) = common_config((&headset, &headset_default), (&monitor, &monitor_default)).unwrap();
        assert_eq!((a.sample_rate(), c.sample_rate()), (48_000, 48_000));
        assert_eq!((c.channels(), c.sample_format()), (2, SampleFormat::I16));
        // Both take 16 kHz: chosen first.
        let (a, _) = common_config((&headset, &headset_default), (&headset, &headset_default)).unwrap();
        assert_eq!(a.sample_rate(), 16_000);
        // Only an unhandled format at the only shared rate: no configuration.
        let odd = [range(2, 22_050, 22_050, SampleFormat::I24)];
        let odd_default = default(2, 22_050, SampleFormat::I24);
        assert!(common_config((&headset, &headset_default), (&odd, &odd_default)).is_none());
        // A stereo device whose default format is unhandled falls back to a handled one.
        let stereo = config_at(&monitor, &default(2, 48_000, SampleFormat::I24), 48_000, 2).unwrap();
        assert_eq!(stereo.sample_format(), SampleFormat::I16);
    }

    /// On a machine without a sound card (servers, CI) opening fails with a
    /// clear error instead of a panic; with one, it may succeed or fail.
    #[test]
    fn no_device_is_a_clear_error() {
        let devices = std::panic::catch_unwind(list_input_devices).expect("listing devices must not panic");
        let opened = std::panic::catch_unwind(|| DeviceSource::open(None, None).map(|s| s.format()))
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
