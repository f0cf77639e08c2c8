//! Live capture from sound devices with cpal.
//!
//! The agent is an input device (a headset microphone); the customer is a
//! second input device — typically the monitor of the output device, which
//! PulseAudio and PipeWire expose as an input — or channel 1 of one stereo
//! device that carries both parties.
//!
//! Real-time rule: the driver calls the data callback on its own thread with
//! a deadline. The callback only de-interleaves into the channel rings
//! ([`deliver`]): no allocation, lock, log or system call; when a ring is
//! full the samples are counted as overrun and dropped, never waited for.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use super::{AudioSource, Running, SourceFormat};
use crate::audio::Channel;
use crate::buffer::RingWriter;

/// An input device as `callwatch devices` shows it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub name: String,
    pub is_default: bool,
    pub channels: u16,
    pub sample_rate: u32,
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

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .or_else(|_| device.id().map(|id| id.to_string()))
        .unwrap_or_else(|_| "(unnamed)".into())
}

/// Input devices of the default host, with their default input format.
pub fn list_input_devices() -> Result<Vec<DeviceInfo>> {
    let _quiet = QuietAlsa::new();
    let host = cpal::default_host();
    let default = host.default_input_device().map(|d| device_name(&d));
    let devices = host
        .input_devices()
        .with_context(|| format!("cannot list {} input devices", host.id().name()))?;
    Ok(devices
        .filter_map(|d| {
            let config = d.default_input_config().ok()?;
            let name = device_name(&d);
            Some(DeviceInfo {
                is_default: default.as_deref() == Some(name.as_str()),
                name,
                channels: config.channels(),
                sample_rate: config.sample_rate(),
            })
        })
        .collect())
}

/// One device stream and which of its channels go to which party.
struct Input {
    device: cpal::Device,
    config: cpal::SupportedStreamConfig,
    /// (device channel, index into the source's channel list)
    pick: Vec<(usize, usize)>,
}

pub struct DeviceSource {
    inputs: Vec<Input>,
    sample_rate: u32,
}

impl DeviceSource {
    /// Opens the agent's device (default input when `None`) and the
    /// customer's (when `None`, the agent's device must be stereo).
    pub fn open(agent: Option<&str>, customer: Option<&str>) -> Result<Self> {
        let _quiet = QuietAlsa::new();
        let host = cpal::default_host();
        let no_device = || {
            let seen = list_input_devices()
                .map(|d| d.iter().map(|d| d.name.clone()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            anyhow!(
                "no usable audio input device (host {}; devices seen: {}). Replay a recording with `callwatch monitor CALL.wav` instead",
                host.id().name(),
                if seen.is_empty() { "none".into() } else { seen }
            )
        };
        let find = |wanted: Option<&str>| -> Result<cpal::Device> {
            match wanted {
                None => host.default_input_device().ok_or_else(no_device),
                Some(name) => {
                    let wanted = name.to_lowercase();
                    host.input_devices()
                        .map_err(|_| no_device())?
                        .find(|d| device_name(d).to_lowercase().contains(&wanted))
                        .ok_or_else(|| anyhow!("no input device matches {name:?}: {}", no_device()))
                }
            }
        };
        let agent = find(agent)?;
        let agent_config = agent
            .default_input_config()
            .map_err(|e| anyhow!("{}: {e}; {}", device_name(&agent), no_device()))?;
        let inputs = match customer {
            None if agent_config.channels() >= 2 => vec![Input {
                device: agent,
                config: agent_config,
                pick: vec![(0, 0), (1, 1)],
            }],
            None => bail!(
                "{} is mono: name the customer's device with --customer (e.g. the monitor of the output device)",
                device_name(&agent)
            ),
            Some(name) => {
                let customer = find(Some(name))?;
                let customer_config = customer
                    .default_input_config()
                    .map_err(|e| anyhow!("{}: {e}; {}", device_name(&customer), no_device()))?;
                if customer_config.sample_rate() != agent_config.sample_rate() {
                    bail!(
                        "agent device runs at {} Hz and customer device at {} Hz; set both to one rate",
                        agent_config.sample_rate(),
                        customer_config.sample_rate()
                    );
                }
                vec![
                    Input {
                        device: agent,
                        config: agent_config,
                        pick: vec![(0, 0)],
                    },
                    Input {
                        device: customer,
                        config: customer_config,
                        pick: vec![(0, 0)],
                    },
                ]
            }
        };
        let sample_rate = inputs[0].config.sample_rate();
        Ok(Self { inputs, sample_rate })
    }
}

/// The data callback's whole job: copy the picked channels of interleaved
/// `data` into the rings. Allocation-, lock- and syscall-free.
pub fn deliver<T>(data: &[T], device_channels: usize, pick: &[(usize, usize)], writers: &mut [RingWriter])
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let frames = data.len() / device_channels;
    for &(from, to) in pick {
        let samples = data
            .iter()
            .skip(from)
            .step_by(device_channels)
            .map(|s| f32::from_sample_(*s));
        writers[to].write_iter(samples, frames);
    }
}

fn build<T>(input: &Input, mut writers: Vec<RingWriter>) -> Result<cpal::Stream>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = input.config.channels() as usize;
    let pick = input.pick.clone();
    let stream = input.device.build_input_stream(
        input.config.config(),
        move |data: &[T], _: &cpal::InputCallbackInfo| deliver(data, channels, &pick, &mut writers),
        // Not the audio thread's data path: reporting here is allowed.
        |err| tracing::warn!("audio stream error: {err}"),
        None,
    )?;
    Ok(stream)
}

impl AudioSource for DeviceSource {
    fn format(&self) -> SourceFormat {
        SourceFormat {
            sample_rate: self.sample_rate,
            channels: vec![Channel::Agent, Channel::Customer],
        }
    }

    fn start(self: Box<Self>, writers: Vec<RingWriter>) -> Result<Box<dyn Running>> {
        // cpal streams are not Send on every platform: a dedicated thread
        // builds and owns them, and drops them (closing the rings) on stop.
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let inputs = self.inputs;
        let thread = std::thread::Builder::new().name("capture".into()).spawn(move || {
            let _quiet = QuietAlsa::new();
            let mut writers = writers.into_iter().map(Some).collect::<Vec<_>>();
            let streams: Result<Vec<cpal::Stream>> = inputs
                .iter()
                .map(|input| {
                    // One device: both writers; two devices: one writer each.
                    let mine: Vec<RingWriter> = if inputs.len() == 1 {
                        writers.iter_mut().filter_map(Option::take).collect()
                    } else {
                        let i = inputs.iter().position(|x| std::ptr::eq(x, input)).unwrap_or(0);
                        writers[i].take().into_iter().collect()
                    };
                    let stream = match input.config.sample_format() {
                        SampleFormat::F32 => build::<f32>(input, mine),
                        SampleFormat::I16 => build::<i16>(input, mine),
                        SampleFormat::U16 => build::<u16>(input, mine),
                        SampleFormat::I32 => build::<i32>(input, mine),
                        other => Err(anyhow!("sample format {other} is not supported")),
                    }?;
                    stream.play()?;
                    Ok(stream)
                })
                .collect();
            match streams {
                Ok(streams) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.recv();
                    drop(streams);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the capture thread died while starting"))??;
        Ok(Box::new(Capturing {
            stop: stop_tx,
            thread: Some(thread),
        }))
    }
}

struct Capturing {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Running for Capturing {
    fn wait(mut self: Box<Self>) -> Result<()> {
        // A live source never ends by itself: wait until the process stops it.
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow!("the capture thread panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::ring;
    use std::sync::atomic::Ordering;

    /// The capture path without a device: a thread plays the driver, calling
    /// `deliver` with interleaved stereo i16 blocks; both rings receive their
    /// channel in order, scaled to [-1, 1].
    #[test]
    fn callback_path_splits_stereo_into_the_rings() {
        let (w0, mut r0) = ring(1 << 16);
        let (w1, mut r1) = ring(1 << 16);
        let driver = std::thread::spawn(move || {
            let mut writers = vec![w0, w1];
            for block in 0..100i16 {
                let data: Vec<i16> = (0..160i16)
                    .flat_map(|i| [block * 160 + i, -(block * 160 + i)])
                    .collect();
                deliver(&data, 2, &[(0, 0), (1, 1)], &mut writers);
            }
        });
        let (mut agent, mut customer) = (Vec::new(), Vec::new());
        while !(r0.is_finished() && r1.is_finished()) {
            r0.read_into(&mut agent);
            r1.read_into(&mut customer);
        }
        driver.join().unwrap();
        assert_eq!(agent.len(), 16_000);
        for (i, (a, c)) in agent.iter().zip(&customer).enumerate() {
            assert_eq!(*a, i as f32 / 32768.0);
            assert_eq!(*c, -(i as f32) / 32768.0);
        }
    }

    #[test]
    fn full_ring_counts_overruns_in_the_callback() {
        let (w, _r) = ring(100);
        let mut writers = vec![w];
        deliver(&[0.5f32; 300], 1, &[(0, 0)], &mut writers);
        assert_eq!(writers[0].stats().overrun.load(Ordering::Relaxed), 200);
    }

    #[test]
    fn no_device_is_a_clear_error() {
        // On a machine with a sound card opening may succeed; that is fine too.
        if let Err(e) = DeviceSource::open(None, None) {
            let msg = e.to_string();
            assert!(
                msg.contains("no usable audio input device") || msg.contains("is mono"),
                "{msg}"
            );
        }
    }
}
