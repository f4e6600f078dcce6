//! Device-allocator statistics through a small C++ shim over `at::accelerator`.
//!
//! libtorch's caching allocator keeps the numbers that show what the warm pass buys (bytes
//! reserved, how often it went to the device for more, how often it had to free its cache and
//! retry); tch 0.24 exposes none of them. On a machine without an accelerator every call
//! reports [`MemoryStats::Unavailable`] instead of failing, so CPU runs log the same way.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};

const OK: i32 = 0;
const UNAVAILABLE: i32 = 1;
const MESSAGE_LEN: usize = 512;

unsafe extern "C" {
    fn seqwarm_memory_stats(
        device_index: i32,
        out: *mut DeviceMemory,
        message: *mut c_char,
        message_len: usize,
    ) -> i32;
    fn seqwarm_reset_peak_stats(device_index: i32, message: *mut c_char, message_len: usize)
    -> i32;
    fn seqwarm_reset_accumulated_stats(
        device_index: i32,
        message: *mut c_char,
        message_len: usize,
    ) -> i32;
    fn seqwarm_empty_cache(message: *mut c_char, message_len: usize) -> i32;
    fn seqwarm_set_cuda_autocast_bf16(message: *mut c_char, message_len: usize) -> i32;
}

/// The caching allocator's counters for one device. `#[repr(C)]`: the shim fills it in this
/// field order (`shim/memory.cpp`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// Bytes held by live tensors now.
    pub allocated_bytes: i64,
    /// The most bytes held by live tensors since the last peak reset.
    pub peak_allocated_bytes: i64,
    /// Bytes the allocator holds from the device now (live tensors plus its cache).
    pub reserved_bytes: i64,
    /// The most bytes held from the device since the last peak reset.
    pub peak_reserved_bytes: i64,
    /// Device allocations (`cudaMalloc` calls) since the last accumulated reset.
    pub device_allocations: i64,
    /// Device frees since the last accumulated reset.
    pub device_frees: i64,
    /// Times an allocation failed, the cache was flushed and the allocation retried.
    pub allocation_retries: i64,
    /// Out-of-memory errors raised.
    pub ooms: i64,
    /// Free device memory as the driver reports it.
    pub free_bytes: u64,
    /// Total device memory.
    pub total_bytes: u64,
}

/// One reading of the device allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "memory")]
pub enum MemoryStats {
    /// No accelerator on this machine (CPU training): nothing to report.
    Unavailable,
    /// The caching allocator's counters for one device.
    Device(DeviceMemory),
}

impl MemoryStats {
    /// Whether there is an accelerator to report on.
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Device(_))
    }

    /// The device's counters, when there is a device.
    pub fn device(&self) -> Option<&DeviceMemory> {
        match self {
            Self::Device(memory) => Some(memory),
            Self::Unavailable => None,
        }
    }

    /// Peak reserved bytes, when available.
    pub fn peak_reserved_bytes(&self) -> Option<i64> {
        self.device().map(|m| m.peak_reserved_bytes)
    }

    /// Device allocations, when available.
    pub fn device_allocations(&self) -> Option<i64> {
        self.device().map(|m| m.device_allocations)
    }

    /// Allocation retries, when available.
    pub fn allocation_retries(&self) -> Option<i64> {
        self.device().map(|m| m.allocation_retries)
    }
}

/// Calls a shim entry point with a message buffer. `Ok(true)`: done; `Ok(false)`: no
/// accelerator; `Err`: the C++ exception's message.
fn call(entry: impl FnOnce(*mut c_char, usize) -> i32) -> Result<bool> {
    let mut message = [0 as c_char; MESSAGE_LEN];
    match entry(message.as_mut_ptr(), MESSAGE_LEN) {
        OK => Ok(true),
        UNAVAILABLE => Ok(false),
        _ => {
            // The shim always NUL-terminates inside the buffer.
            let bytes: Vec<u8> = message.iter().map(|&c| c as u8).collect();
            let text = CStr::from_bytes_until_nul(&bytes).map_or_else(
                |_| "unreadable message".into(),
                |c| c.to_string_lossy().into_owned(),
            );
            Err(TrainerError::Memory(text))
        }
    }
}

/// Reads the allocator's counters for device `index`.
pub fn memory_stats(index: usize) -> Result<MemoryStats> {
    let mut raw = DeviceMemory::default();
    // SAFETY: `raw` and the message buffer outlive the call; the shim writes within the
    // given length.
    let available = call(|message, len| unsafe {
        seqwarm_memory_stats(index as i32, &raw mut raw, message, len)
    })?;
    if !available {
        return Ok(MemoryStats::Unavailable);
    }
    Ok(MemoryStats::Device(raw))
}

// SAFETY (all below): the message buffer outlives the call and the shim writes within the
// given length.

/// Starts new peaks for device `index`. Returns whether there was an accelerator.
pub fn reset_peak_stats(index: usize) -> Result<bool> {
    call(|message, len| unsafe { seqwarm_reset_peak_stats(index as i32, message, len) })
}

/// Zeroes the accumulated counters (device allocations, retries, OOMs) for device `index`.
pub fn reset_accumulated_stats(index: usize) -> Result<bool> {
    call(|message, len| unsafe { seqwarm_reset_accumulated_stats(index as i32, message, len) })
}

/// Returns the allocator's unused cached blocks to the device.
pub fn empty_cache() -> Result<bool> {
    call(|message, len| unsafe { seqwarm_empty_cache(message, len) })
}

/// Makes CUDA autocast use bfloat16 (tch's switch would otherwise give float16).
pub fn set_cuda_autocast_bf16() -> Result<bool> {
    call(|message, len| unsafe { seqwarm_set_cuda_autocast_bf16(message, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_reports_unavailable_without_failing() {
        if tch::Cuda::is_available() {
            eprintln!("an accelerator is present; the CPU path is not exercised here");
            return;
        }
        assert_eq!(memory_stats(0).unwrap(), MemoryStats::Unavailable);
        assert!(!reset_peak_stats(0).unwrap());
        assert!(!empty_cache().unwrap());
    }

    #[test]
    fn device_counters_move_with_allocations() {
        if !tch::Cuda::is_available() {
            eprintln!("no CUDA device: skipping the device-counter test");
            return;
        }
        reset_accumulated_stats(0).unwrap();
        let before = memory_stats(0).unwrap();
        let big = tch::Tensor::zeros([64, 1024, 1024], (tch::Kind::Float, tch::Device::Cuda(0)));
        let after = memory_stats(0).unwrap();
        drop(big);
        let (Some(b), Some(a)) = (before.peak_reserved_bytes(), after.peak_reserved_bytes()) else {
            panic!("stats unavailable on a CUDA machine");
        };
        assert!(a >= b + 256 * 1024 * 1024);
        assert!(after.device_allocations().unwrap() > before.device_allocations().unwrap());
    }
}
