//! Sound devices without a sound card: alsa-lib's own `file` plugin, fed in
//! real time through a FIFO, in an ALSA configuration of the test's own.
//!
//! Each device is a PCM `{ type file; slave.pcm "null"; infile FIFO }` in
//! `$HOME/.asoundrc` (a temporary HOME; `hint.description` names it in
//! `callwatch devices`). cpal opens it through its real ALSA backend and
//! reads it with `snd_pcm_readi`, which the plugin serves by `read(2)` on
//! the infile: what paces the device is that read.
//!
//! * `null` itself does not pace: it reports a full buffer at once, always.
//! * A regular file as infile does not either, and at its end the plugin
//!   keeps returning whole periods (of stale data) as fast as it is asked.
//! * A FIFO does: `read` blocks until the test's writer thread has written,
//!   and the writer writes one period at each period's wall-clock time. Two
//!   details make it exact. The plugin reports a full period even when
//!   `read` returned less, so the writer writes whole periods (the period
//!   alsa-lib picks, found by opening the PCM as cpal does), each in one
//!   `write` of at most `PIPE_BUF` bytes (atomic). And the writer holds the
//!   FIFO open read-write, so opening it for reading (cpal probes every
//!   device several times) never blocks; it starts the clock when the
//!   capture has drained one period of silence put there to detect it.
//!
//! Closing the writer's end is a device whose input ends: the plugin then
//! races (see above), which callwatch must catch.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the device's samples are stored, as cpal negotiates them: with
/// `null` below the plugin every format is possible and cpal prefers f32;
/// with a `linear` plugin below it only integer formats are, and cpal
/// prefers i32. (No plugin that can sit below `file` offers only i16, so
/// i16 needs real hardware.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    F32,
    I32,
}

impl Format {
    fn alsa(self) -> alsa::pcm::Format {
        match self {
            Format::F32 => alsa::pcm::Format::FloatLE,
            Format::I32 => alsa::pcm::Format::S32LE,
        }
    }

    fn encode(self, x: f32, out: &mut Vec<u8>) {
        match self {
            Format::F32 => out.extend_from_slice(&x.to_le_bytes()),
            Format::I32 => {
                let v = (f64::from(x.clamp(-1.0, 1.0)) * 2_147_483_647.0) as i32;
                out.extend_from_slice(&v.to_le_bytes())
            }
        }
    }
}

/// Channels every test device runs with: cpal prefers stereo when a device
/// allows any count, and a one-party device uses channel 0.
pub const CHANNELS: usize = 2;

/// A test device: its ALSA name, the description shown, its FIFO.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    pub name: &'static str,
    pub description: &'static str,
    pub format: Format,
}

/// Every device of the test configuration (one configuration per process:
/// alsa-lib reads it once). Each test uses its own devices.
pub const DEVICES: &[Device] = &[
    Device {
        name: "cw_stereo_f32",
        description: "Test call stereo f32",
        format: Format::F32,
    },
    Device {
        name: "cw_stereo_i32",
        description: "Test call stereo i32",
        format: Format::I32,
    },
    Device {
        name: "cw_agent_f32",
        description: "Test agent headset f32",
        format: Format::F32,
    },
    Device {
        name: "cw_customer_i32",
        description: "Test customer line i32",
        format: Format::I32,
    },
    Device {
        name: "cw_agent_b",
        description: "Test agent headset B",
        format: Format::F32,
    },
    Device {
        name: "cw_customer_b",
        description: "Test customer line B",
        format: Format::F32,
    },
    Device {
        name: "cw_full_agent",
        description: "Test full call agent",
        format: Format::F32,
    },
    Device {
        name: "cw_full_customer",
        description: "Test full call customer",
        format: Format::F32,
    },
    Device {
        name: "cw_frozen",
        description: "Test device that falls silent",
        format: Format::F32,
    },
    Device {
        name: LOST,
        description: "Test device that goes away",
        format: Format::F32,
    },
];

pub fn device(name: &str) -> Device {
    *DEVICES.iter().find(|d| d.name == name).expect("a test device")
}

/// The device whose FIFO the test closes: it lives in a configuration of its
/// own ([`lost_home`]), since every capture opens every device it is shown.
pub const LOST: &str = "cw_lost";

struct Homes {
    root: tempfile::TempDir,
    /// Every device but [`LOST`], each FIFO held open for writing for the
    /// whole run (listing or capturing opens them all, and opening a FIFO
    /// for reading waits for a writer).
    _held: Vec<File>,
}

/// The FIFOs and three HOMEs, made once: `all` (this process's own
/// alsa-lib, which finds each device's period), `main` (every device but
/// [`LOST`]) and `lost` (only it).
fn homes() -> &'static Homes {
    static HOMES: OnceLock<Homes> = OnceLock::new();
    HOMES.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        for d in DEVICES {
            let fifo = root.path().join(format!("{}.fifo", d.name));
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(
                unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
                0,
                "mkfifo {}",
                fifo.display()
            );
        }
        let write_rc = |home: &str, keep: &dyn Fn(&Device) -> bool| {
            let dir = root.path().join(home);
            std::fs::create_dir(&dir).unwrap();
            let rc: String = DEVICES
                .iter()
                .filter(|d| keep(d))
                .map(|d| asoundrc_entry(d, root.path()))
                .collect();
            std::fs::write(dir.join(".asoundrc"), rc).unwrap();
        };
        write_rc("all", &|_| true);
        write_rc("main", &|d| d.name != LOST);
        write_rc("lost", &|d| d.name == LOST);
        // Set before this process first touches alsa-lib (it reads the
        // configuration once).
        std::env::set_var("HOME", root.path().join("all"));
        let held = DEVICES
            .iter()
            .filter(|d| d.name != LOST)
            .map(|d| open_rw(&root.path().join(format!("{}.fifo", d.name))))
            .collect();
        Homes { root, _held: held }
    })
}

fn asoundrc_entry(d: &Device, root: &Path) -> String {
    let slave = match d.format {
        Format::F32 => r#""null""#.to_owned(),
        Format::I32 => r#"{ type linear; slave { pcm "null"; format S32_LE } }"#.to_owned(),
    };
    format!(
        "pcm.{} {{\n  type file\n  slave.pcm {slave}\n  file \"/dev/null\"\n  infile \"{}\"\n  \
         hint {{ show on; description \"{}\" }}\n}}\n",
        d.name,
        root.join(format!("{}.fifo", d.name)).display(),
        d.description
    )
}

/// The HOME for captures of every device but [`LOST`].
pub fn home() -> PathBuf {
    homes().root.path().join("main")
}

/// The HOME for the capture of [`LOST`] alone.
pub fn lost_home() -> PathBuf {
    homes().root.path().join("lost")
}

fn open_rw(fifo: &Path) -> File {
    std::fs::OpenOptions::new().read(true).write(true).open(fifo).unwrap()
}

fn fifo_of(device: &Device) -> PathBuf {
    homes().root.path().join(format!("{}.fifo", device.name))
}

/// One period of `device` at `rate`, in frames, as alsa-lib picks it for
/// cpal: open for capture, interleaved, the format, two channels, the rate.
fn period_frames(device: &Device, rate: u32) -> usize {
    use alsa::pcm::{Access, HwParams, PCM};
    let pcm = PCM::new(device.name, alsa::Direction::Capture, true).unwrap();
    let hw = HwParams::any(&pcm).unwrap();
    hw.set_access(Access::RWInterleaved).unwrap();
    hw.set_format(device.format.alsa()).unwrap();
    hw.set_channels(CHANNELS as u32).unwrap();
    hw.set_rate(rate, alsa::ValueOr::Nearest).unwrap();
    pcm.hw_params(&hw).unwrap();
    let period = pcm.hw_params_current().unwrap().get_period_size().unwrap();
    period as usize
}

/// What to feed a device: per-frame channel values at `rate`, then silence
/// until stopped; or, with `vanish_after_s`, close the FIFO at that point
/// (the device goes away mid-call); or, with `freeze_after_s`, stop writing
/// but keep it open (the device hangs: the capture's read never returns).
pub struct Feed {
    pub device: Device,
    pub rate: u32,
    pub frames: Vec<[f32; CHANNELS]>,
    pub vanish_after_s: Option<f64>,
    pub freeze_after_s: Option<f64>,
}

/// A writer thread feeding one device in real time.
pub struct Mic {
    stop: Arc<AtomicBool>,
    started: mpsc::Receiver<Instant>,
    fed: mpsc::Receiver<Instant>,
    thread: Option<JoinHandle<()>>,
}

impl Mic {
    /// Opens the device's FIFO (read-write: never blocks) and starts
    /// writing once the capture reads.
    pub fn start(feed: Feed) -> Self {
        let pipe = open_rw(&fifo_of(&feed.device));
        let period = period_frames(&feed.device, feed.rate);
        let frame_bytes = CHANNELS * 4;
        assert!(
            period * frame_bytes <= libc::PIPE_BUF,
            "one period must be one atomic write"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = mpsc::channel();
        let (fed_tx, fed) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            write_in_real_time(pipe, &feed, period, &thread_stop, &started_tx, &fed_tx);
        });
        Self {
            stop,
            started,
            fed,
            thread: Some(thread),
        }
    }

    /// When the capture began reading (the call's time zero, to a period).
    pub fn started(&self, within: Duration) -> Option<Instant> {
        self.started.recv_timeout(within).ok()
    }

    /// When the last frame of the feed was written (or the FIFO closed).
    pub fn fed(&self, within: Duration) -> Instant {
        self.fed.recv_timeout(within).expect("the feed did not finish")
    }
}

impl Drop for Mic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_in_real_time(
    mut pipe: File,
    feed: &Feed,
    period: usize,
    stop: &AtomicBool,
    started: &mpsc::Sender<Instant>,
    fed: &mpsc::Sender<Instant>,
) {
    let encode = |frames: &mut dyn Iterator<Item = [f32; CHANNELS]>| {
        let mut bytes = Vec::with_capacity(period * CHANNELS * 4);
        for frame in frames {
            for x in frame {
                feed.device.format.encode(x, &mut bytes);
            }
        }
        bytes
    };
    let silence = encode(&mut std::iter::repeat_n([0.0; CHANNELS], period));
    // One period of silence; the capture has started when it is gone.
    pipe.write_all(&silence).unwrap();
    let t0 = loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD on a FIFO stores the byte count in `queued`.
        unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut queued) };
        if queued == 0 {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = started.send(t0);
    let period_s = period as f64 / f64::from(feed.rate);
    let vanish_at = feed.vanish_after_s.map(|s| (s * f64::from(feed.rate)) as usize);
    let freeze_at = feed.freeze_after_s.map(|s| (s * f64::from(feed.rate)) as usize);
    let mut next = 0usize;
    let mut k = 0u32;
    while !stop.load(Ordering::Acquire) {
        if vanish_at.is_some_and(|at| next >= at) {
            drop(pipe);
            let _ = fed.send(Instant::now());
            return;
        }
        if freeze_at.is_some_and(|at| next >= at) {
            let _ = fed.send(Instant::now());
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        let end = (next + period).min(feed.frames.len());
        let chunk = if next < end {
            let mut frames = feed.frames[next..end]
                .iter()
                .copied()
                .chain(std::iter::repeat([0.0; CHANNELS]));
            encode(&mut frames.by_ref().take(period))
        } else {
            silence.clone()
        };
        if pipe.write_all(&chunk).is_err() {
            return;
        }
        next += period;
        if next >= feed.frames.len() && next < feed.frames.len() + period {
            let _ = fed.send(Instant::now());
        }
        k += 1;
        let due = t0 + Duration::from_secs_f64(f64::from(k) * period_s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// `samples` at `from` Hz as `rate` (at most 16 kHz → up): linear
/// interpolation, another method than callwatch's own resampler.
pub fn at_rate(samples: &[f32], from: u32, rate: u32) -> Vec<f32> {
    assert!(rate >= from, "the test only resamples up");
    if rate == from {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * u64::from(rate) / u64::from(from)) as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * f64::from(from) / f64::from(rate);
            let (k, f) = (x as usize, (x - x.floor()) as f32);
            let a = samples[k.min(samples.len() - 1)];
            let b = samples.get(k + 1).copied().unwrap_or(a);
            a * (1.0 - f) + b * f
        })
        .collect()
}
