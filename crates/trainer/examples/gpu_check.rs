//! What the warm pass buys on a device: one process per setting, so that every run starts
//! with an empty caching allocator.
//!
//! It trains a GPT on random token ids through a sequence-length ramp (the lengths a linear
//! warmup schedule gives) and prints, as JSON lines and a table: peak reserved memory, device
//! allocations and allocation retries during the ramp, and steps/s at each length.
//!
//! ```text
//! gpu_check warm=on  [device=cuda] [layers=12 heads=12 width=768 vocab=50257]
//!                    [rows=16 min=128 max=1024 step=128 steps_per_len=4]
//! ```
//! `scripts/gpu-check` runs it with the warm pass on and off; on a machine without CUDA it
//! runs a small CPU configuration as a dry run.

use std::collections::BTreeMap;
use std::time::Instant;

use seqwarm_schedule::ScheduleConfig;
use seqwarm_trainer::tch::{self, Device, Kind, Tensor};
use seqwarm_trainer::{
    GptConfig, ModelInput, Trainer, TrainerConfig, reset_accumulated_stats, reset_peak_stats,
};

struct Settings {
    warm: bool,
    device: Device,
    layers: i64,
    heads: i64,
    width: i64,
    vocab: i64,
    rows: i64,
    min: u64,
    max: u64,
    step: u64,
    steps_per_len: u64,
}

fn parse() -> Result<Settings, String> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for arg in std::env::args().skip(1) {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!("expected key=value, got `{arg}`"));
        };
        values.insert(key.to_string(), value.to_string());
    }
    let cuda = tch::Cuda::is_available();
    let get = |key: &str, cuda_default: &str, cpu_default: &str| -> String {
        values
            .get(key)
            .cloned()
            .unwrap_or_else(|| if cuda { cuda_default } else { cpu_default }.to_string())
    };
    let num = |key: &str, cuda_default: &str, cpu_default: &str| -> Result<i64, String> {
        get(key, cuda_default, cpu_default)
            .parse::<i64>()
            .map_err(|e| format!("{key}: {e}"))
    };
    let device =
        seqwarm_trainer::parse_device(&get("device", "cuda", "cpu")).map_err(|e| e.to_string())?;
    Ok(Settings {
        warm: match get("warm", "on", "on").as_str() {
            "on" => true,
            "off" => false,
            other => return Err(format!("warm: `{other}` is not on or off")),
        },
        device,
        layers: num("layers", "12", "2")?,
        heads: num("heads", "12", "2")?,
        width: num("width", "768", "64")?,
        vocab: num("vocab", "50257", "257")?,
        rows: num("rows", "16", "4")?,
        min: num("min", "128", "32")? as u64,
        max: num("max", "1024", "128")? as u64,
        step: num("step", "128", "32")? as u64,
        steps_per_len: num("steps_per_len", "4", "2")? as u64,
    })
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = parse()?;
    let lengths: Vec<u64> = {
        // The lengths a linear warmup from min to max in increments of `step` visits.
        let changes = (s.max - s.min) / s.step.max(1) + 1;
        let total = changes * s.steps_per_len * 2;
        let schedule = ScheduleConfig::linear(s.min, s.max, 0.5, total)
            .with_step(s.step)
            .build()?;
        let mut seen: Vec<u64> = schedule.change_points().map(|p| p.seq_len).collect();
        seen.dedup();
        seen
    };
    let model = GptConfig::new(s.vocab, s.max as i64)
        .with_layers(s.layers)
        .with_heads(s.heads)
        .with_width(s.width);
    let mut config = TrainerConfig::new(model.clone(), 1 << 40);
    config.lr.warmup_tokens = 1;
    let index = match s.device {
        Device::Cuda(i) => i,
        _ => 0,
    };
    let mut trainer = Trainer::new(config, s.device, Kind::Int)?;
    let _ = reset_accumulated_stats(index)?;
    let _ = reset_peak_stats(index)?;
    let start_memory = trainer.memory()?;
    let warm = if s.warm {
        Some(trainer.warm_pass(s.rows, s.max as i64)?)
    } else {
        None
    };
    let after_warm = trainer.memory()?;
    println!(
        "{}",
        serde_json::json!({
            "kind": "setup",
            "warm_pass": s.warm,
            "device": format!("{:?}", s.device),
            "parameters": model.parameter_count(),
            "rows": s.rows,
            "lengths": lengths,
            "memory_at_start": start_memory,
            "memory_after_warm_pass": after_warm,
            "warm_pass_seconds": warm.as_ref().map(|w| w.seconds),
        })
    );
    let allocations_before_ramp = after_warm.device_allocations();
    let mut tokens = 0u64;
    let mut per_length = Vec::new();
    for &len in &lengths {
        let mut first = 0.0;
        let mut steady = Vec::new();
        let allocations_before = trainer.memory()?.device_allocations();
        for i in 0..s.steps_per_len {
            let ids = Tensor::randint(s.vocab, [s.rows, len as i64], (Kind::Int, s.device));
            let input = ModelInput {
                labels: ids.shallow_clone(),
                input_ids: ids,
                position_ids: None,
                segment_ids: None,
            };
            sync(s.device);
            let started = Instant::now();
            let (loss, _, _) = trainer.train_step(&input, tokens)?;
            let _ = loss.double_value(&[]);
            sync(s.device);
            // The first step at a new length pays for new kernels and (without the warm pass)
            // for new device memory; it is reported apart from the steady rate.
            if i == 0 {
                first = started.elapsed().as_secs_f64();
            } else {
                steady.push(started.elapsed().as_secs_f64());
            }
            tokens += (s.rows as u64) * len;
        }
        let memory = trainer.memory()?;
        let steps_per_s = if steady.is_empty() {
            1.0 / first
        } else {
            steady.len() as f64 / steady.iter().sum::<f64>()
        };
        let record = serde_json::json!({
            "kind": "length",
            "warm_pass": s.warm,
            "seq_len": len,
            "first_step_s": first,
            "steps_per_s": steps_per_s,
            "device_allocations": match (memory.device_allocations(), allocations_before) {
                (Some(after), Some(before)) => Some(after - before),
                _ => None,
            },
            "reserved_bytes": memory.device().map(|m| m.reserved_bytes),
        });
        println!("{record}");
        per_length.push(record);
    }
    let end = trainer.memory()?;
    let summary = serde_json::json!({
        "kind": "summary",
        "warm_pass": s.warm,
        "peak_reserved_bytes": end.peak_reserved_bytes(),
        "device_allocations_during_ramp": match (end.device_allocations(), allocations_before_ramp) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        },
        "device_allocations_total": end.device_allocations(),
        "allocation_retries": end.allocation_retries(),
        "memory": end,
    });
    println!("{summary}");
    eprintln!(
        "warm pass {}: peak reserved {}, device allocations during the ramp {}, retries {}",
        if s.warm { "on " } else { "off" },
        end.peak_reserved_bytes().map_or_else(
            || "unavailable (CPU)".into(),
            |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
        ),
        summary["device_allocations_during_ramp"],
        summary["allocation_retries"],
    );
    eprintln!(
        "{:>8} {:>12} {:>10} {:>12}",
        "seq_len", "first step s", "steps/s", "device allocs"
    );
    for r in &per_length {
        eprintln!(
            "{:>8} {:>12.4} {:>10.2} {:>12}",
            r["seq_len"],
            r["first_step_s"].as_f64().unwrap_or(0.0),
            r["steps_per_s"].as_f64().unwrap_or(0.0),
            r["device_allocations"]
        );
    }
    Ok(())
}
