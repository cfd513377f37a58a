#include "paramserver/dense_shard.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/base/check.h"
#include "common/ps/weights_digest.h"

namespace pstrain {

DenseShard::DenseShard(const KeyLayout& layout, KeyRange keys, std::span<const float> initial,
                       const ShardOptions& options)
    : layout_(layout),
      keys_(keys),
      flat_(layout.Flat(keys)),
      blocks_(layout.LowerBound(keys.end) - layout.LowerBound(keys.begin)),
      options_(options),
      params_(flat_.size()),
      optimizer_(Optimizer::Create(options.optimizer, flat_.size())),
      accum_(flat_.size()),
      completed_(static_cast<size_t>(std::max(options.slots, 1)), 0) {
  std::copy(initial.begin(), initial.end(), params_.data());
}

bool DenseShard::Record(int slot, int64_t clock, size_t first, size_t last, int64_t samples,
                        uint64_t hash) {
  SlotClock& sc = seen_[{clock, slot}];
  for (const auto& [b, e] : sc.parts) {
    if (first < e && b < last) return false;
  }
  if (sc.parts.empty()) {
    sc.samples = samples;
    sc.hash = hash;
  }
  sc.parts.emplace_back(first, last);
  sc.received += last - first;
  return true;
}

StatusOr<DenseShard::PushOutcome> DenseShard::Push(int slot, int64_t clock, const KeyRange& part,
                                                   Frame payload, int64_t samples,
                                                   uint64_t sample_hash, float lr) {
  if (slot < 0 || slot >= options_.slots) {
    return InvalidArgument("slot " + std::to_string(slot) + " is not in [0, " +
                           std::to_string(options_.slots) + ")");
  }
  if (!layout_.IsValidRange(part) || part.begin < keys_.begin || part.end > keys_.end) {
    return InvalidArgument("push of keys " + ToString(part) + " outside the shard's " +
                           ToString(keys_));
  }
  const FlatRange f = layout_.Flat(part);
  const size_t begin = f.begin - flat_.begin, n = f.size();
  const size_t first = layout_.LowerBound(part.begin), last = layout_.LowerBound(part.end);
  const bool empty = payload.size() == 0;
  if (empty && samples != 0) return InvalidArgument("a push without payload must have 0 samples");
  if (!empty && payload.size() != n * sizeof(float)) {
    return InvalidArgument("payload of " + std::to_string(payload.size()) + " bytes for " +
                           std::to_string(n) + " floats");
  }
  if (clock < 0) return InvalidArgument("negative clock");
  if (options_.consistency == Consistency::kBsp) {
    if (clock < version_) return PushOutcome::kDuplicate;  // already applied
    if (clock > version_) {
      return Aborted("push for clock " + std::to_string(clock) + " while the shard is at clock " +
                     std::to_string(version_) + " (BSP allows no running ahead)");
    }
    if (!Record(slot, clock, first, last, samples, sample_hash)) return PushOutcome::kDuplicate;
    pending_[slot].push_back({begin, n, std::move(payload)});
    pending_lr_ = lr;
    MaybeCompleteBsp();
    return clock < version_ ? PushOutcome::kApplied : PushOutcome::kBuffered;
  }
  // ASP / SSP: apply now, once; a clock far ahead of the slot's would only
  // make the server remember it.
  if (clock >= completed_[slot] + kMaxClockLead) {
    return Aborted("push for clock " + std::to_string(clock) + " while slot " +
                   std::to_string(slot) + " has completed " + std::to_string(completed_[slot]) +
                   " steps (at most " + std::to_string(kMaxClockLead) + " ahead)");
  }
  if (!Record(slot, clock, first, last, samples, sample_hash)) return PushOutcome::kDuplicate;
  if (!empty) {
    const float* g = FramedFloats(payload, &scratch_);
    ApplyAsync(begin, n, g, lr);
    if (replicate_) {
      replicate_({part, g, lr, async_steps_[begin], version_, clock, slot, samples, sample_hash});
    }
  } else if (replicate_) {
    replicate_({part, nullptr, lr, 0, version_, clock, slot, 0, 0});
  }
  if (seen_[{clock, slot}].received >= blocks_) {
    completed_[slot] = std::max(completed_[slot], clock + 1);
  }
  return PushOutcome::kApplied;
}

void DenseShard::ApplyAsync(size_t begin, size_t n, const float* g, float lr) {
  const int64_t step = ++async_steps_[begin];
  optimizer_->Apply(std::span<float>(params_.data() + begin, n), std::span<const float>(g, n), lr,
                    begin, step);
  ++version_;
  ++updates_;
}

bool DenseShard::SumWholeParts() {
  const size_t n = accum_.size();
  const float* g[2] = {nullptr, nullptr};
  for (int s = 0; s < options_.slots; ++s) {
    const std::vector<Part>& parts = pending_[s];
    if (parts.size() != 1 || parts[0].begin != 0 || parts[0].n != n ||
        parts[0].payload.size() != n * sizeof(float) ||
        reinterpret_cast<uintptr_t>(parts[0].payload.data()) % alignof(float) != 0) {
      return false;
    }
    if (s < 2) g[s] = reinterpret_cast<const float*>(parts[0].payload.data());
  }
  // The same sums as adding each slot to zeros in turn: 0 + g0 keeps the
  // sign of a zero as that does.
  float* __restrict a = accum_.data();
  const float* __restrict g0 = g[0];
  if (options_.slots == 1) {
    for (size_t i = 0; i < n; ++i) a[i] = 0.0f + g0[i];
    return true;
  }
  const float* __restrict g1 = g[1];
  for (size_t i = 0; i < n; ++i) a[i] = (0.0f + g0[i]) + g1[i];
  for (int s = 2; s < options_.slots; ++s) {
    const float* __restrict gs = reinterpret_cast<const float*>(pending_[s][0].payload.data());
    for (size_t i = 0; i < n; ++i) a[i] += gs[i];
  }
  return true;
}

void DenseShard::MaybeCompleteBsp() {
  for (int s = 0; s < options_.slots; ++s) {
    auto it = seen_.find({version_, s});
    if (it == seen_.end() || it->second.received < blocks_) return;
  }
  // Sum in slot order so the result does not depend on arrival order.
  if (!SumWholeParts()) {
    std::fill(accum_.data(), accum_.data() + accum_.size(), 0.0f);
    for (int s = 0; s < options_.slots; ++s) {
      for (const Part& p : pending_[s]) {
        if (p.payload.size() == 0) continue;
        const float* g = FramedFloats(p.payload, &scratch_);
        float* __restrict a = accum_.data() + p.begin;
        for (size_t i = 0; i < p.n; ++i) a[i] += g[i];
      }
    }
  }
  optimizer_->Apply(params_.span(), accum_.span(), pending_lr_, 0, version_ + 1);
  pending_.clear();
  ++version_;
  ++updates_;
  if (!cuts_.empty() && cuts_.erase(version_) != 0) cut_images_.emplace(version_, TakeImage());
  if (replicate_) {
    SampleStats st;
    for (int s = 0; s < options_.slots; ++s) {
      auto it = seen_.find({version_ - 1, s});
      if (it == seen_.end()) continue;
      st.samples += it->second.samples;
      st.hash += it->second.hash;
    }
    replicate_({keys_, accum_.data(), pending_lr_, version_, version_, version_ - 1, -1, st.samples,
                st.hash});
  }
}

Status DenseShard::ApplyReplicated(const Update& u) {
  if (!layout_.IsValidRange(u.part) || u.part.begin < keys_.begin || u.part.end > keys_.end) {
    return InvalidArgument("replicated update of keys " + ToString(u.part) + " outside " +
                           ToString(keys_));
  }
  const FlatRange f = layout_.Flat(u.part);
  const size_t begin = f.begin - flat_.begin, n = f.size();
  if (options_.consistency == Consistency::kBsp) {
    if (u.version <= version_) return OkStatus();  // already applied (a retry)
    replicated_stats_.try_emplace(u.clock, SampleStats{u.samples, u.sample_hash});
  } else {
    if (u.slot < 0 || u.slot >= options_.slots) return InvalidArgument("bad slot");
    // Recorded like a push, so a retry after a promotion is recognised.
    if (!Record(u.slot, u.clock, layout_.LowerBound(u.part.begin), layout_.LowerBound(u.part.end),
                u.samples, u.sample_hash)) {
      return OkStatus();
    }
    if (seen_[{u.clock, u.slot}].received >= blocks_) {
      completed_[u.slot] = std::max(completed_[u.slot], u.clock + 1);
    }
  }
  if (u.gradient != nullptr) {
    optimizer_->Apply(std::span<float>(params_.data() + begin, n),
                      std::span<const float>(u.gradient, n), u.lr, begin, u.step);
    if (options_.consistency != Consistency::kBsp) async_steps_[begin] = u.step;
    ++updates_;
  }
  version_ = std::max(version_, u.version);
  durable_version_ = version_;
  return OkStatus();
}

bool DenseShard::PullReady(int64_t clock) const {
  switch (options_.consistency) {
    case Consistency::kBsp:
      return version_ >= clock;
    case Consistency::kAsp:
      return true;
    case Consistency::kSsp:
      for (int64_t done : completed_) {
        if (done < clock - options_.staleness) return false;
      }
      return true;
  }
  return true;
}

int64_t DenseShard::NewestWaitableClock() const {
  switch (options_.consistency) {
    case Consistency::kBsp:
      return version_ + kPullWindow;
    case Consistency::kAsp:
      break;
    case Consistency::kSsp:
      return *std::min_element(completed_.begin(), completed_.end()) + options_.staleness +
             kPullWindow;
  }
  return std::numeric_limits<int64_t>::max();
}

std::shared_ptr<const std::vector<float>> DenseShard::Snapshot() {
  if (current_snapshot_ && snapshot_version_ == version_) return current_snapshot_;
  current_snapshot_.reset();  // back to the pool, unless a reply still holds it
  std::shared_ptr<std::vector<float>> buf = snapshots_.Get(flat_.size());
  std::memcpy(buf->data(), params_.data(), flat_.size() * sizeof(float));
  current_snapshot_ = std::move(buf);
  snapshot_version_ = version_;
  return current_snapshot_;
}

std::shared_ptr<const std::vector<uint16_t>> DenseShard::CodedSnapshot(WireType wire) {
  PSTRAIN_CHECK(wire == WireType::kFloat16 || wire == WireType::kBfloat16)
      << "weights are coded fp16 or bf16, not " << WireTypeName(wire);
  if (current_coded_ && coded_version_ == version_ && coded_wire_ == wire) return current_coded_;
  current_coded_.reset();  // back to the pool, unless a reply still holds it
  std::shared_ptr<std::vector<uint16_t>> out = coded_pool_.Get(flat_.size());
  (wire == WireType::kFloat16 ? FloatToHalf : FloatToBf16)(params_.data(), out->data(),
                                                           flat_.size());
  current_coded_ = std::move(out);
  coded_version_ = version_;
  coded_wire_ = wire;
  return current_coded_;
}

double DenseShard::SumSquares() const {
  const double n = L2Norm(params_.span());
  return n * n;
}

uint64_t DenseShard::Digest() const { return RangeDigest(layout_, keys_, params_.span()); }

DenseShard::SampleStats DenseShard::TakeSampleStats(int64_t clock_begin, int64_t clock_end) {
  SampleStats st;
  for (auto it = replicated_stats_.begin(); it != replicated_stats_.end();) {
    if (it->first >= clock_end) break;
    if (it->first >= clock_begin) {
      st.samples += it->second.samples;
      st.hash += it->second.hash;
    }
    it = replicated_stats_.erase(it);
  }
  for (auto it = seen_.begin(); it != seen_.end();) {
    const int64_t clock = it->first.first;
    if (clock >= clock_end) break;
    if (clock >= clock_begin) {
      st.samples += it->second.samples;
      st.hash += it->second.hash;
    }
    it = seen_.erase(it);
  }
  return st;
}

void DenseShard::Save(BinaryWriter& w) const {
  const DenseShard* self = this;
  SaveRange(w, {&self, 1});
}

DenseShard::Image DenseShard::TakeImage() const {
  Image m;
  m.keys = keys_;
  m.flat_begin = flat_.begin;
  m.flat_end = flat_.end;
  m.version = version_;
  m.updates = updates_;
  m.optimizer_steps = optimizer_->steps();
  m.params.assign(params_.data(), params_.data() + params_.size());
  for (const auto& a : optimizer_->State()) m.state.emplace_back(a.begin(), a.end());
  m.async_steps = async_steps_;
  m.completed = completed_;
  for (const auto& [clock, st] : replicated_stats_) {
    if (clock >= version_) break;
    m.stats.samples += st.samples;
    m.stats.hash += st.hash;
  }
  for (const auto& [key, sc] : seen_) {
    if (key.first >= version_) break;
    m.stats.samples += sc.samples;
    m.stats.hash += sc.hash;
  }
  return m;
}

bool DenseShard::AddCut(int64_t clock) {
  if (clock < version_) return false;
  if (clock == version_) {
    cut_images_.emplace(clock, TakeImage());
  } else {
    cuts_.insert(clock);
  }
  return true;
}

DenseShard::Image DenseShard::TakeCutImage(int64_t clock) {
  auto it = cut_images_.find(clock);
  PSTRAIN_CHECK(it != cut_images_.end()) << "no image at clock " << clock;
  Image m = std::move(it->second);
  cut_images_.erase(it);
  return m;
}

void DenseShard::ClearCuts() {
  cuts_.clear();
  cut_images_.clear();
}

void DenseShard::SaveRange(BinaryWriter& w, std::span<const DenseShard* const> pieces) {
  std::vector<Image> images;
  images.reserve(pieces.size());
  for (const DenseShard* p : pieces) images.push_back(p->TakeImage());
  std::vector<const Image*> views;
  for (const Image& m : images) views.push_back(&m);
  SaveImages(w, views);
}

void DenseShard::SaveImages(BinaryWriter& w, std::span<const Image* const> pieces) {
  const Image& front = *pieces.front();
  const size_t base = front.flat_begin;
  const size_t n = pieces.back()->flat_end - base;
  w.Reserve((front.state.size() + 1) * (n * sizeof(float) + 8) + 256);
  // Every piece's values of one array at their place in the range (zeros
  // between them), straight into the file's bytes.
  auto write = [&](auto&& values_of) {
    uint8_t* out = w.ZeroFloats(n);
    for (const Image* p : pieces) {
      const std::vector<float>& v = values_of(*p);
      std::memcpy(out + (p->flat_begin - base) * sizeof(float), v.data(), v.size() * sizeof(float));
    }
  };
  int64_t version = front.version;
  std::vector<int64_t> completed = front.completed;
  for (const Image* p : pieces) {
    version = std::min(version, p->version);
    for (size_t i = 0; i < completed.size(); ++i) {
      completed[i] = std::max(completed[i], p->completed[i]);
    }
  }
  w.U64(front.keys.begin);
  w.U64(pieces.back()->keys.end);
  w.I64(version);
  w.I64(front.updates);
  w.I64(front.optimizer_steps);
  write([](const Image& p) -> const std::vector<float>& { return p.params; });
  const size_t state = front.state.size();
  w.U32(static_cast<uint32_t>(state));
  for (size_t i = 0; i < state; ++i) {
    write([i](const Image& p) -> const std::vector<float>& { return p.state[i]; });
  }
  uint64_t async = 0;
  for (const Image* p : pieces) async += p->async_steps.size();
  w.U64(async);
  for (const Image* p : pieces) {
    for (const auto& [begin, steps] : p->async_steps) {
      w.U64(begin + p->flat_begin - base);
      w.I64(steps);
    }
  }
  w.U64(completed.size());
  for (int64_t c : completed) w.I64(c);
  // Every piece counts the same (slot, clock) samples: the front's stand
  // for the range.
  w.I64(front.stats.samples);
  w.U64(front.stats.hash);
}

StatusOr<DenseShard::Saved> DenseShard::ReadSaved(BinaryReader& r, const KeyRange& keys,
                                                  std::span<float> weights) {
  ASSIGN_OR_RETURN(uint64_t begin, r.U64());
  ASSIGN_OR_RETURN(uint64_t end, r.U64());
  if (begin != keys.begin || end != keys.end) {
    return DataLoss(r.name() + ": holds keys " + ToString({begin, end}) + ", not " +
                    ToString(keys) + " (was the job's server count changed?)");
  }
  Saved saved;
  ASSIGN_OR_RETURN(saved.version, r.I64());
  ASSIGN_OR_RETURN(saved.updates, r.I64());
  ASSIGN_OR_RETURN(saved.optimizer_steps, r.I64());
  RETURN_IF_ERROR(r.Floats(weights));
  return saved;
}

Status DenseShard::Load(BinaryReader& r) {
  DenseShard* self = this;
  return LoadRange(r, {&self, 1});
}

Status DenseShard::LoadRange(BinaryReader& r, std::span<DenseShard* const> pieces) {
  DenseShard& front = *pieces.front();
  const size_t base = front.flat_.begin;
  std::vector<float> flat(pieces.back()->flat_.end - base);
  // Hands each piece its values of one array.
  auto scatter = [&](auto&& values_of) {
    for (DenseShard* p : pieces) {
      const std::span<float> v = values_of(*p);
      const auto from = flat.begin() + static_cast<long>(p->flat_.begin - base);
      std::copy(from, from + static_cast<long>(v.size()), v.begin());
    }
  };
  ASSIGN_OR_RETURN(const Saved saved,
                   ReadSaved(r, {front.keys_.begin, pieces.back()->keys_.end}, flat));
  scatter([](DenseShard& p) { return p.params_.span(); });
  ASSIGN_OR_RETURN(uint32_t slots, r.U32());
  const size_t state = front.optimizer_->State().size();
  if (slots != state) {
    return DataLoss(r.name() + ": optimizer state has " + std::to_string(slots) +
                    " tensors, this optimizer needs " + std::to_string(state) +
                    " (was optimizer.type changed?)");
  }
  for (size_t i = 0; i < state; ++i) {
    RETURN_IF_ERROR(r.Floats(flat));
    scatter([i](DenseShard& p) { return p.optimizer_->State()[i]; });
  }
  ASSIGN_OR_RETURN(uint64_t n_async, r.U64());
  if (n_async > (1u << 24)) return DataLoss(r.name() + ": implausible step table");
  for (DenseShard* p : pieces) p->async_steps_.clear();
  for (uint64_t i = 0; i < n_async; ++i) {
    ASSIGN_OR_RETURN(uint64_t b, r.U64());
    ASSIGN_OR_RETURN(int64_t st, r.I64());
    auto in = std::find_if(pieces.begin(), pieces.end(), [&](const DenseShard* p) {
      return b >= p->flat_.begin - base && b < p->flat_.end - base;
    });
    if (in == pieces.end()) return DataLoss(r.name() + ": step table entry outside the keys");
    (*in)->async_steps_[b - ((*in)->flat_.begin - base)] = st;
  }
  ASSIGN_OR_RETURN(uint64_t n_completed, r.U64());
  if (n_completed != front.completed_.size()) {
    return DataLoss(r.name() + ": written for " + std::to_string(n_completed) +
                    " workers, this job has " + std::to_string(front.completed_.size()));
  }
  for (int64_t& c : front.completed_) {
    ASSIGN_OR_RETURN(c, r.I64());
  }
  SampleStats carried;  // absent from files written before it was added
  if (!r.AtEnd()) {
    ASSIGN_OR_RETURN(carried.samples, r.I64());
    ASSIGN_OR_RETURN(carried.hash, r.U64());
    if (carried.samples < 0) return DataLoss(r.name() + ": negative sample count");
  }
  if (!r.AtEnd()) return DataLoss(r.name() + ": unexpected bytes after the shard state");
  for (DenseShard* p : pieces) {
    p->version_ = saved.version;
    p->updates_ = saved.updates;
    p->optimizer_->set_steps(saved.optimizer_steps);
    p->completed_ = front.completed_;
    p->seen_.clear();
    p->pending_.clear();
    p->current_snapshot_.reset();
    p->snapshot_version_ = -1;
    p->current_coded_.reset();
    p->coded_version_ = -1;
    p->replicated_stats_.clear();
    p->ClearCuts();
    // The samples of the epoch's steps before the checkpoint's clock, so
    // the epoch's sample check still sees each sample once.
    if (carried.samples > 0 && saved.version > 0) {
      p->replicated_stats_[saved.version - 1] = carried;
    }
  }
  return OkStatus();
}

std::string DenseShard::Waiting() const {
  std::string missing;
  for (int s = 0; s < options_.slots; ++s) {
    auto it = seen_.find({version_, s});
    if (it == seen_.end() || it->second.received < blocks_) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(s);
    }
  }
  return "keys " + ToString(keys_) + " at clock " + std::to_string(version_) +
         (missing.empty() ? "" : ": waiting for slots " + missing);
}

}  // namespace pstrain
