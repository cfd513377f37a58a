#include "paramserver/sparse_table.h"

#include <cmath>
#include <cstring>

#include "common/rng.h"

namespace pstrain {

StatusOr<SparseTable> SparseTable::Create(uint32_t table, uint32_t dim, const OptimizerOptions& opt,
                                          uint64_t seed, float init_scale) {
  if (dim == 0 || dim > (1u << 16)) {
    return InvalidArgument("sparse table " + std::to_string(table) + ": row width " +
                           std::to_string(dim) + " is not in [1, 65536]");
  }
  if (opt.kind != OptimizerKind::kSgd && opt.kind != OptimizerKind::kAdagrad) {
    return InvalidArgument("sparse tables are trained with sgd or adagrad, not " +
                           std::string(OptimizerKindName(opt.kind)));
  }
  return SparseTable(table, dim, opt, seed, init_scale);
}

SparseTable::SparseTable(uint32_t table, uint32_t dim, const OptimizerOptions& opt, uint64_t seed,
                         float init_scale)
    : table_(table), dim_(dim), opt_(opt), seed_(seed), init_scale_(init_scale) {}

float* SparseTable::Row(uint64_t row) {
  auto [it, inserted] = index_.try_emplace(row, values_.size());
  if (inserted) {
    values_.resize(values_.size() + dim_);
    state_.resize(values_.size(), 0.0f);
    Rng rng(seed_ ^ (static_cast<uint64_t>(table_) << 40), row);
    float* v = values_.data() + it->second;
    for (uint32_t i = 0; i < dim_; ++i) v[i] = rng.Uniform(-init_scale_, init_scale_);
  }
  return values_.data() + it->second;
}

void SparseTable::Pull(std::span<const uint64_t> rows, float* out) {
  for (size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(out + r * dim_, Row(rows[r]), dim_ * sizeof(float));
  }
}

void SparseTable::Push(std::span<const uint64_t> rows, const float* grads, float lr) {
  for (size_t r = 0; r < rows.size(); ++r) {
    float* w = Row(rows[r]);
    const float* g = grads + r * dim_;
    if (opt_.kind == OptimizerKind::kSgd) {
      for (uint32_t i = 0; i < dim_; ++i) w[i] -= lr * (g[i] + opt_.weight_decay * w[i]);
    } else {
      float* s = state_.data() + (w - values_.data());
      for (uint32_t i = 0; i < dim_; ++i) {
        const float gi = g[i] + opt_.weight_decay * w[i];
        s[i] += gi * gi;
        w[i] -= lr * gi / (std::sqrt(s[i]) + opt_.eps);
      }
    }
  }
}

}  // namespace pstrain
