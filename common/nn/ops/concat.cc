#include "common/nn/ops/concat.h"

#include <algorithm>

namespace pstrain {

void ConcatForward(const std::vector<const float*>& xs, const std::vector<int64_t>& widths,
                   int64_t positions, int batch, float* y) {
  const int64_t rows = positions * batch;
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < xs.size(); ++k) {
      const float* src = xs[k] + r * widths[k];
      y = std::copy(src, src + widths[k], y);
    }
  }
}

void ConcatBackward(const float* dy, const std::vector<int64_t>& widths, int64_t positions,
                    int batch, const std::vector<float*>& dxs, const std::vector<uint8_t>& add) {
  const int64_t rows = positions * batch;
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < dxs.size(); ++k) {
      if (dxs[k] != nullptr) {
        StoreGrad(dxs[k] + r * widths[k], static_cast<size_t>(widths[k]), add[k],
                  [&](size_t i) { return dy[i]; });
      }
      dy += widths[k];
    }
  }
}

std::string ConcatOp::Describe() const {
  std::string s = "concat ";
  for (size_t k = 0; k < widths_.size(); ++k) s += (k ? "+" : "") + std::to_string(widths_[k]);
  return s + "->" + out_.Text();
}

void ConcatOp::Forward(const OpCall& c) {
  ConcatForward(c.in, widths_, out_.positions(), c.batch, c.out);
}

void ConcatOp::Backward(const OpCall& c) {
  ConcatBackward(c.dout, widths_, out_.positions(), c.batch, c.din, c.din_add);
}

StatusOr<std::unique_ptr<Op>> MakeConcat(const OpContext& c) {
  const ValueShape& first = c.inputs[0];
  std::vector<int64_t> widths;
  int64_t total = 0;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const ValueShape& s = c.inputs[k];
    const bool fits = first.image.known()
                          ? s.image.known() && s.image.height == first.image.height &&
                                s.image.width == first.image.width
                          : !s.image.known();
    if (!fits) {
      return InvalidArgument(c.at + ": a concat joins flat values, or images of one height and " +
                             "width, but input 0 is " + first.Text() + " and input " +
                             std::to_string(k) + " is " + s.Text());
    }
    widths.push_back(s.features());
    total += s.features();
  }
  ValueShape out = ValueShape::Flat(total);
  if (first.image.known()) {
    out = ValueShape::Of({static_cast<int>(total), first.image.height, first.image.width});
  }
  return std::unique_ptr<Op>(std::make_unique<ConcatOp>(std::move(widths), out));
}

}  // namespace pstrain
