#include "common/nn/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/base/check.h"

namespace pstrain {

FloatBuffer::FloatBuffer(size_t n) : size_(n) {
  if (n == 0) return;
  size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<float*>(p));
}

void FloatBuffer::Free::operator()(float* p) const { std::free(p); }

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
