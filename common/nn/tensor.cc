#include "common/nn/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/base/check.h"

namespace pstrain {

namespace {
// Every buffer starts 64 bytes after its block: the block's first 8 bytes
// say how it was made (0: aligned_alloc; else the length of an anonymous
// mapping). Large buffers are mappings, whose pages the kernel zeroes on
// first touch: a buffer never written (a server's copy of the gradients it
// never computes) costs no memory.
constexpr size_t kHeader = 64;
constexpr size_t kMapAtLeast = size_t{1} << 20;
}  // namespace

FloatBuffer::FloatBuffer(size_t n) : size_(n) {
  if (n == 0) return;
  const size_t bytes = (n * sizeof(float) + 63) / 64 * 64 + kHeader;
  std::byte* block = nullptr;
  if (bytes >= kMapAtLeast) {
    void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    block = static_cast<std::byte*>(m);
    const uint64_t length = bytes;
    std::memcpy(block, &length, sizeof(length));
  } else {
    block = static_cast<std::byte*>(std::aligned_alloc(64, bytes));
    if (block == nullptr) throw std::bad_alloc();
    std::memset(block, 0, bytes);
  }
  data_.reset(reinterpret_cast<float*>(block + kHeader));
}

void FloatBuffer::Free::operator()(float* p) const {
  std::byte* block = reinterpret_cast<std::byte*>(p) - kHeader;
  uint64_t length = 0;
  std::memcpy(&length, block, sizeof(length));
  if (length == 0) {
    std::free(block);
  } else {
    ::munmap(block, length);
  }
}

void FloatBuffer::Fill(float v) {
  for (size_t i = 0; i < size_; ++i) data_[i] = v;
}

int TensorLayout::Add(std::string name, std::vector<int64_t> shape) {
  PSTRAIN_CHECK(Find(name) < 0) << "duplicate tensor " << name;
  size_t size = 1;
  for (int64_t d : shape) {
    PSTRAIN_CHECK(d > 0) << name;
    size *= static_cast<size_t>(d);
  }
  TensorSpec spec{std::move(name), std::move(shape), total_, size};
  total_ += (size + kTensorAlignFloats - 1) / kTensorAlignFloats * kTensorAlignFloats;
  tensors_.push_back(std::move(spec));
  return count() - 1;
}

size_t TensorLayout::parameter_count() const {
  size_t n = 0;
  for (const TensorSpec& t : tensors_) n += t.size;
  return n;
}

int TensorLayout::Find(const std::string& name) const {
  for (int i = 0; i < count(); ++i) {
    if (tensors_[i].name == name) return i;
  }
  return -1;
}

std::string ImageShape::Text() const {
  return std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
}

double L2Norm(std::span<const float> v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

size_t FirstNonFinite(std::span<const float> v) {
  constexpr size_t kBlock = 1024;
  for (size_t at = 0; at < v.size(); at += kBlock) {
    const size_t m = std::min(kBlock, v.size() - at);
    uint32_t bad = 0;
    for (size_t i = 0; i < m; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &v[at + i], sizeof(bits));
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);  // exponent all ones
    }
    if (bad == 0) continue;
    for (size_t i = at; i < at + m; ++i) {
      if (!std::isfinite(v[i])) return i;
    }
  }
  return v.size();
}

}  // namespace pstrain
