//! Choosing devices and formats: the host's input devices, matching the
//! names people type, and a configuration both parties' devices can share.

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{SampleFormat, SupportedStreamConfig, SupportedStreamConfigRange};

use crate::{DeviceInfo, PREFERRED_RATES, REPLAY_HINT};

/// An input device of the host, as scanned once per `open`/listing.
pub(crate) struct Found {
    pub(crate) device: cpal::Device,
    pub(crate) name: String,
    /// The backend's id (ALSA: the PCM name, e.g. `hw:CARD=USB,DEV=0`).
    pub(crate) id: String,
    pub(crate) is_default: bool,
    pub(crate) config: SupportedStreamConfig,
}

impl Found {
    pub(crate) fn info(&self) -> DeviceInfo {
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
pub(crate) fn default_host() -> Result<cpal::Host> {
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
pub(crate) fn scan(host: &cpal::Host) -> Result<Vec<Found>> {
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

pub(crate) fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .or_else(|_| device.id().map(|id| id.id().to_owned()))
        .unwrap_or_else(|_| "(unnamed device)".into())
}

/// The devices found, for error messages.
pub(crate) fn seen(found: &[Found]) -> String {
    if found.is_empty() {
        return "none".into();
    }
    found
        .iter()
        .map(|f| format!("{} ({} ch, {} Hz)", f.name, f.config.channels(), f.config.sample_rate()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn no_device(host: &str, found: &[Found], cause: Option<&cpal::Error>) -> anyhow::Error {
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

pub(crate) fn pick_device(found: &[Found], wanted: &str, role: &str, host: &str) -> Result<(cpal::Device, String)> {
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
pub(crate) fn match_device(candidates: &[(&str, &str)], wanted: &str) -> Option<usize> {
    let lower = wanted.to_lowercase();
    let position = |test: &dyn Fn(&str) -> bool| candidates.iter().position(|(n, id)| test(n) || test(id));
    position(&|s| s == wanted)
        .or_else(|| position(&|s| s.to_lowercase() == lower))
        .or_else(|| position(&|s| !lower.is_empty() && s.to_lowercase().contains(&lower)))
}

pub(crate) fn input_ranges(device: &cpal::Device) -> Vec<SupportedStreamConfigRange> {
    device
        .supported_input_configs()
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// Sample formats [`deliver`] is built for.
pub(crate) fn is_handled(format: SampleFormat) -> bool {
    matches!(
        format,
        SampleFormat::F32 | SampleFormat::I16 | SampleFormat::U16 | SampleFormat::I32
    )
}

/// A configuration at `rate` with at least `min_channels` in a handled
/// format: the default if it fits, else the closest range (same channel
/// count and format as the default first, then cpal's own preference).
pub(crate) fn config_at(
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

/// Configurations for two devices at one rate: `wanted` if given (and only
/// it), else 16 kHz, 48 kHz, the agent's default, then the customer's default.
pub(crate) fn common_config(
    agent: (&[SupportedStreamConfigRange], &SupportedStreamConfig),
    customer: (&[SupportedStreamConfigRange], &SupportedStreamConfig),
    wanted: Option<u32>,
) -> Option<(SupportedStreamConfig, SupportedStreamConfig)> {
    let preferred = [
        PREFERRED_RATES[0],
        PREFERRED_RATES[1],
        agent.1.sample_rate(),
        customer.1.sample_rate(),
    ];
    let rates = match wanted {
        Some(rate) => &[rate][..],
        None => &preferred[..],
    };
    rates.iter().find_map(|&rate| {
        Some((
            config_at(agent.0, agent.1, rate, 1)?,
            config_at(customer.0, customer.1, rate, 1)?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpal::SupportedBufferSize;

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
        let (a, c) = common_config((&headset, &headset_default), (&monitor, &monitor_default), None).unwrap();
        assert_eq!((a.sample_rate(), c.sample_rate()), (48_000, 48_000));
        assert_eq!((c.channels(), c.sample_format()), (2, SampleFormat::I16));
        // Both take 16 kHz: chosen first.
        let (a, _) = common_config((&headset, &headset_default), (&headset, &headset_default), None).unwrap();
        assert_eq!(a.sample_rate(), 16_000);
        // A rate asked for is the only one tried.
        let (a, c) = common_config((&headset, &headset_default), (&monitor, &monitor_default), Some(44_100)).unwrap();
        assert_eq!((a.sample_rate(), c.sample_rate()), (44_100, 44_100));
        assert!(common_config((&headset, &headset_default), (&monitor, &monitor_default), Some(8_000)).is_none());
        // Only an unhandled format at the only shared rate: no configuration.
        let odd = [range(2, 22_050, 22_050, SampleFormat::I24)];
        let odd_default = default(2, 22_050, SampleFormat::I24);
        assert!(common_config((&headset, &headset_default), (&odd, &odd_default), None).is_none());
        // A stereo device whose default format is unhandled falls back to a handled one.
        let stereo = config_at(&monitor, &default(2, 48_000, SampleFormat::I24), 48_000, 2).unwrap();
        assert_eq!(stereo.sample_format(), SampleFormat::I16);
    }
}
