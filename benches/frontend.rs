//! Micro-benchmarks of the per-channel front end: what each 20 ms packet of
//! each party costs before Whisper. Run with `cargo bench --bench frontend`.

use std::hint::black_box;

use callwatch_core::audio::Resampler;
use callwatch_core::buffer::ring;
use callwatch_core::vad::{Segmenter, VadConfig, VadEvent};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// One second of speech-like audio (a gliding harmonic tone with syllable-rate
/// amplitude modulation), deterministic.
fn speechlike(rate: u32) -> Vec<f32> {
    (0..rate)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let f0 = 120.0 + 40.0 * (t * 3.0).sin();
            let env = (0.5 + 0.5 * (t * 2.0 * std::f32::consts::PI * 4.0).sin()).powi(2);
            env * 0.3
                * ((0..5)
                    .map(|h| ((h + 1) as f32 * f0 * t * std::f32::consts::TAU).sin() / (h + 1) as f32)
                    .sum::<f32>())
        })
        .collect()
}

fn ring_buffer(c: &mut Criterion) {
    let packet = vec![0.25f32; 320]; // 20 ms at 16 kHz
    let (mut w, mut r) = ring(16_000);
    let mut out = Vec::with_capacity(16_000);
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(320));
    g.bench_function("write+read 20 ms packet", |b| {
        b.iter(|| {
            w.write(black_box(&packet));
            out.clear();
            r.read_into(&mut out);
        })
    });
    g.finish();
}

fn vad(c: &mut Criterion) {
    let audio = speechlike(16_000);
    let mut g = c.benchmark_group("vad");
    g.throughput(Throughput::Elements(audio.len() as u64));
    g.bench_function("segment 1 s of 16 kHz audio", |b| {
        let mut seg = Segmenter::new(VadConfig::default());
        let mut events: Vec<VadEvent> = Vec::new();
        b.iter(|| {
            seg.push(black_box(&audio), &mut events);
            events.clear();
        })
    });
    g.finish();
}

fn resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    for rate in [8_000, 48_000] {
        let audio = speechlike(rate);
        g.throughput(Throughput::Elements(audio.len() as u64));
        g.bench_function(format!("1 s from {rate} Hz"), |b| {
            let mut rs = Resampler::new(rate).unwrap();
            let mut out = Vec::with_capacity(16_000);
            b.iter(|| {
                out.clear();
                for packet in audio.chunks(rate as usize / 50) {
                    rs.push(black_box(packet), &mut out);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ring_buffer, vad, resample);
criterion_main!(benches);
