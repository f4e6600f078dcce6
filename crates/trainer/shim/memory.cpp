// Device-allocator statistics and bf16 autocast for seqwarm-trainer.
//
// tch 0.24 exposes neither the caching allocator's counters nor the autocast dtype, so this
// shim reaches libtorch's device-generic `at::accelerator` API directly. Every entry point
// catches C++ exceptions and reports them as a status plus message: an exception must never
// unwind into Rust.
#include <ATen/DeviceAccelerator.h>
#include <ATen/autocast_mode.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

extern "C" {

struct seqwarm_memory_stats {
  int64_t allocated_current;
  int64_t allocated_peak;
  int64_t reserved_current;
  int64_t reserved_peak;
  int64_t device_allocations;
  int64_t device_frees;
  int64_t allocation_retries;
  int64_t ooms;
  uint64_t free_bytes;
  uint64_t total_bytes;
};

enum seqwarm_status : int32_t {
  SEQWARM_OK = 0,
  SEQWARM_UNAVAILABLE = 1,
  SEQWARM_ERROR = 2,
};

static void write_message(const char* text, char* buffer, size_t length) {
  if (buffer == nullptr || length == 0) return;
  std::strncpy(buffer, text, length - 1);
  buffer[length - 1] = '\0';
}

// An accelerator counts only when one is both compiled in and present: a CUDA build of
// libtorch on a machine without a GPU reports none.
static bool accelerator_present() {
  auto accelerator = at::accelerator::getAccelerator(false);
  return accelerator.has_value() && at::accelerator::deviceCount() > 0;
}

#define SEQWARM_GUARD(body)                                   \
  try {                                                       \
    if (!accelerator_present()) {                             \
      write_message("no accelerator", message, message_len);  \
      return SEQWARM_UNAVAILABLE;                             \
    }                                                         \
    body                                                      \
    return SEQWARM_OK;                                        \
  } catch (const std::exception& e) {                         \
    write_message(e.what(), message, message_len);            \
    return SEQWARM_ERROR;                                     \
  } catch (...) {                                             \
    write_message("unknown C++ exception", message, message_len); \
    return SEQWARM_ERROR;                                     \
  }

int32_t seqwarm_memory_stats(int32_t device_index, seqwarm_memory_stats* out, char* message,
                             size_t message_len) {
  SEQWARM_GUARD({
    const auto index = static_cast<c10::DeviceIndex>(device_index);
    const auto stats = at::accelerator::getDeviceStats(index);
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out->allocated_current = stats.allocated_bytes[aggregate].current;
    out->allocated_peak = stats.allocated_bytes[aggregate].peak;
    out->reserved_current = stats.reserved_bytes[aggregate].current;
    out->reserved_peak = stats.reserved_bytes[aggregate].peak;
    out->device_allocations = stats.num_device_alloc;
    out->device_frees = stats.num_device_free;
    out->allocation_retries = stats.num_alloc_retries;
    out->ooms = stats.num_ooms;
    const auto info = at::accelerator::getMemoryInfo(index);
    out->free_bytes = info.first;
    out->total_bytes = info.second;
  })
}

int32_t seqwarm_reset_peak_stats(int32_t device_index, char* message, size_t message_len) {
  SEQWARM_GUARD({
    at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
  })
}

int32_t seqwarm_reset_accumulated_stats(int32_t device_index, char* message,
                                        size_t message_len) {
  SEQWARM_GUARD({
    at::accelerator::resetAccumulatedStats(static_cast<c10::DeviceIndex>(device_index));
  })
}

int32_t seqwarm_empty_cache(char* message, size_t message_len) {
  SEQWARM_GUARD({ at::accelerator::emptyCache(); })
}

// tch's autocast switch uses CUDA's default lower-precision type (float16); training wants
// bfloat16, which needs no loss scaling.
int32_t seqwarm_set_cuda_autocast_bf16(char* message, size_t message_len) {
  SEQWARM_GUARD({ at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16); })
}

}  // extern "C"
