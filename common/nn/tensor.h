// Float storage and the layout of named tensors.
//
// FloatBuffer: a fixed-size, 64-byte aligned, zero-initialised float array
// (move-only). Allocated once, reused every step.
//
// TensorLayout: where each named tensor ("dense1.weight", shape {784, 256})
// lives in one flat float array. A model's parameters, its gradients and an
// optimizer's state all share one layout, so a contiguous range of the flat
// array is what a parameter server owns, a checkpoint stores and a push
// carries. Every tensor starts on a 64-byte boundary; the padding between
// tensors is zero and never trained.
//
// Both are owned by one thread or immutable once built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pstrain {

inline constexpr size_t kTensorAlignFloats = 16;  // 64 bytes

// The shape of one sample seen as an image: height x width x channels,
// stored row by row with the channels of a pixel adjacent (HWC). All zero
// when the data has no image shape (flat features, e.g. CSV).
struct ImageShape {
  int channels = 0;
  int height = 0;
  int width = 0;

  bool known() const { return channels > 0 && height > 0 && width > 0; }
  int64_t size() const { return static_cast<int64_t>(channels) * height * width; }
  // "1x28x28" (channels x height x width, as users write it).
  std::string Text() const;
  bool operator==(const ImageShape&) const = default;
};

class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(size_t n);

  size_t size() const { return size_; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::span<float> span() { return {data_.get(), size_}; }
  std::span<const float> span() const { return {data_.get(), size_}; }
  float& operator[](size_t i) { return data_[i]; }
  float operator[](size_t i) const { return data_[i]; }
  void Fill(float v);

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // in floats, multiple of kTensorAlignFloats
  size_t size = 0;    // product of shape
};

class TensorLayout {
 public:
  // Appends a tensor and returns its index.
  int Add(std::string name, std::vector<int64_t> shape);
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  const TensorSpec& operator[](int i) const { return tensors_[i]; }
  int count() const { return static_cast<int>(tensors_.size()); }
  // Floats in the flat array, padding included.
  size_t total_floats() const { return total_; }
  // Trainable values, padding excluded (235,146 for the seed MLP).
  size_t parameter_count() const;
  // Index of the tensor named `name`, or -1.
  int Find(const std::string& name) const;

 private:
  std::vector<TensorSpec> tensors_;
  size_t total_ = 0;
};

// sqrt(sum of squares) of a float range, accumulated in double.
double L2Norm(std::span<const float> v);

// The index of the first NaN or Inf in v, or v.size() when every value is
// finite. Checks a block at a time with a vectorisable bit test, so a
// finite gradient costs a fraction of a copy.
size_t FirstNonFinite(std::span<const float> v);

}  // namespace pstrain
