#include "common/ps/sparse_table.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/base/rng.h"
#include "common/ps/weights_digest.h"

namespace pstrain {

StatusOr<SparseTable> SparseTable::Create(uint32_t table, uint32_t dim, const OptimizerOptions& opt,
                                          uint64_t seed, float init_scale) {
  if (dim == 0 || dim > (1u << 16)) {
    return InvalidArgument("sparse table " + std::to_string(table) + ": row width " +
                           std::to_string(dim) + " is not in [1, 65536]");
  }
  return SparseTable(table, dim, opt, seed, init_scale);
}

SparseTable::SparseTable(uint32_t table, uint32_t dim, const OptimizerOptions& opt, uint64_t seed,
                         float init_scale)
    : table_(table), dim_(dim), opt_(opt), seed_(seed), init_scale_(init_scale) {}

int SparseTable::state_per_value() const {
  switch (opt_.kind) {
    case OptimizerKind::kSgd:
      return 0;
    case OptimizerKind::kAdam:
      return 2;
    default:
      return 1;
  }
}

void SparseTable::Init(uint64_t row, float* out) const {
  Rng rng(seed_ ^ (static_cast<uint64_t>(table_) << 40), row);
  for (uint32_t i = 0; i < dim_; ++i) out[i] = rng.Uniform(-init_scale_, init_scale_);
}

size_t SparseTable::Row(uint64_t row) {
  auto [it, inserted] = index_.try_emplace(row, values_.size());
  if (inserted) {
    values_.resize(values_.size() + dim_);
    state_.resize(state_.size() + static_cast<size_t>(dim_) * state_per_value(), 0.0f);
    if (opt_.kind == OptimizerKind::kAdam) steps_.push_back(0);
    Init(row, values_.data() + it->second);
  }
  return it->second;
}

void SparseTable::Pull(std::span<const uint64_t> rows, float* out) const {
  for (size_t r = 0; r < rows.size(); ++r) {
    auto it = index_.find(rows[r]);
    if (it == index_.end()) {
      Init(rows[r], out + r * dim_);
    } else {
      std::memcpy(out + r * dim_, values_.data() + it->second, dim_ * sizeof(float));
    }
  }
}

void SparseTable::Push(std::span<const uint64_t> rows, const float* grads, float lr) {
  const float wd = opt_.weight_decay;
  for (size_t r = 0; r < rows.size(); ++r) {
    const size_t at = Row(rows[r]);
    float* __restrict w = values_.data() + at;
    const float* __restrict g = grads + r * dim_;
    float* __restrict s = state_.data() + at * state_per_value();
    switch (opt_.kind) {
      case OptimizerKind::kSgd:
        for (uint32_t i = 0; i < dim_; ++i) w[i] -= lr * (g[i] + wd * w[i]);
        break;
      case OptimizerKind::kMomentum:
        for (uint32_t i = 0; i < dim_; ++i) {
          const float gi = g[i] + wd * w[i];
          s[i] = opt_.momentum * s[i] + gi;
          w[i] -= lr * (opt_.nesterov ? gi + opt_.momentum * s[i] : s[i]);
        }
        break;
      case OptimizerKind::kAdagrad:
        for (uint32_t i = 0; i < dim_; ++i) {
          const float gi = g[i] + wd * w[i];
          s[i] += gi * gi;
          w[i] -= lr * gi / (std::sqrt(s[i]) + opt_.eps);
        }
        break;
      case OptimizerKind::kAdam: {
        const int64_t t = ++steps_[at / dim_];
        const double c1 = 1.0 - std::pow(static_cast<double>(opt_.beta1), static_cast<double>(t));
        const double c2 = 1.0 - std::pow(static_cast<double>(opt_.beta2), static_cast<double>(t));
        const float step = static_cast<float>(lr / c1);
        const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(c2));
        float* m = s;
        float* v = s + dim_;
        for (uint32_t i = 0; i < dim_; ++i) {
          const float gi = g[i] + wd * w[i];
          m[i] = opt_.beta1 * m[i] + (1 - opt_.beta1) * gi;
          v[i] = opt_.beta2 * v[i] + (1 - opt_.beta2) * gi * gi;
          w[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + opt_.eps);
        }
        break;
      }
    }
  }
}

uint64_t SparseTable::Digest() const {
  uint64_t sum = 0;  // a sum: the unordered map's order does not matter
  for (const auto& [row, at] : index_) sum += RowDigest(table_, row, {values_.data() + at, dim_});
  return sum;
}

void SparseTable::Save(BinaryWriter& w) const {
  w.U32(table_);
  w.U32(dim_);
  w.U32(static_cast<uint32_t>(opt_.kind));
  std::vector<std::pair<uint64_t, size_t>> rows(index_.begin(), index_.end());
  std::sort(rows.begin(), rows.end());
  w.U64(rows.size());
  const size_t per = static_cast<size_t>(dim_) * state_per_value();
  for (const auto& [row, at] : rows) {
    w.U64(row);
    w.Floats({values_.data() + at, dim_});
    w.Floats({state_.data() + at / dim_ * per, per});
    if (opt_.kind == OptimizerKind::kAdam) w.I64(steps_[at / dim_]);
  }
}

StatusOr<SparseTable> SparseTable::Load(BinaryReader& r, const OptimizerOptions& opt,
                                        uint64_t seed) {
  return LoadWith(r, &opt, seed);
}

StatusOr<SparseTable> SparseTable::LoadSaved(BinaryReader& r) { return LoadWith(r, nullptr, 0); }

StatusOr<SparseTable> SparseTable::LoadWith(BinaryReader& r, const OptimizerOptions* job_opt,
                                            uint64_t seed) {
  ASSIGN_OR_RETURN(const uint32_t table, r.U32());
  ASSIGN_OR_RETURN(const uint32_t dim, r.U32());
  ASSIGN_OR_RETURN(const uint32_t kind, r.U32());
  if (kind > static_cast<uint32_t>(OptimizerKind::kAdagrad)) {
    return DataLoss(r.name() + ": sparse table " + std::to_string(table) +
                    " names no known optimizer (" + std::to_string(kind) + ")");
  }
  OptimizerOptions opt;
  if (job_opt != nullptr) {
    opt = *job_opt;
  } else {
    opt.kind = static_cast<OptimizerKind>(kind);
  }
  ASSIGN_OR_RETURN(SparseTable t, Create(table, dim, opt, seed));
  if (kind != static_cast<uint32_t>(opt.kind)) {
    return DataLoss(r.name() + ": sparse table " + std::to_string(table) +
                    " was saved with another optimizer than the job's " +
                    std::string(OptimizerKindName(opt.kind)));
  }
  ASSIGN_OR_RETURN(const uint64_t count, r.U64());
  const size_t per = static_cast<size_t>(dim) * t.state_per_value();
  for (uint64_t i = 0; i < count; ++i) {
    ASSIGN_OR_RETURN(const uint64_t row, r.U64());
    const size_t at = t.Row(row);
    RETURN_IF_ERROR(r.Floats({t.values_.data() + at, dim}));
    RETURN_IF_ERROR(r.Floats({t.state_.data() + at / dim * per, per}));
    if (opt.kind == OptimizerKind::kAdam) {
      ASSIGN_OR_RETURN(t.steps_[at / dim], r.I64());
    }
  }
  return t;
}

}  // namespace pstrain
