#include "paramserver/range_shard.h"

#include <algorithm>

namespace pstrain {

RangeShard::RangeShard(const KeyLayout& layout, KeyRange keys, std::span<const float> initial,
                       const ShardOptions& options, bool cut)
    : layout_(layout),
      keys_(keys),
      zeros_(std::make_shared<const FloatBuffer>(kTensorAlignFloats)) {
  const size_t base = layout.Flat(keys).begin;
  const std::vector<KeyRange> parts = cut ? layout.Pieces(keys) : std::vector<KeyRange>{keys};
  for (const KeyRange& p : parts) {
    const FlatRange f = layout.Flat(p);
    pieces_.push_back(std::make_unique<DenseShard>(
        layout, p, initial.subspan(f.begin - base, f.size()), options));
  }
}

std::pair<size_t, size_t> RangeShard::Touched(const KeyRange& part) const {
  const auto first = std::partition_point(
      pieces_.begin(), pieces_.end(), [&](const auto& p) { return p->keys().end <= part.begin; });
  const auto last = std::partition_point(first, pieces_.end(),
                                         [&](const auto& p) { return p->keys().begin < part.end; });
  return {static_cast<size_t>(first - pieces_.begin()),
          static_cast<size_t>(last - pieces_.begin())};
}

Status RangeShard::Push(int slot, int64_t clock, const KeyRange& part, Frame payload,
                        int64_t samples, uint64_t sample_hash, float lr) {
  const auto [first, last] = Touched(part);
  if (last - first == 1) {
    return pieces_[first]
        ->Push(slot, clock, part, std::move(payload), samples, sample_hash, lr)
        .status();
  }
  // Each piece gets its slice of the payload, sharing the frame.
  const bool empty = payload.size() == 0;
  const size_t base = layout_.Flat(part).begin;
  if (!empty && payload.size() != layout_.Flat(part).size() * sizeof(float)) {
    return InvalidArgument("payload of " + std::to_string(payload.size()) + " bytes for keys " +
                           ToString(part));
  }
  const auto held = std::make_shared<const Frame>(std::move(payload));
  Status first_error;
  for (size_t i = first; i < last; ++i) {
    const KeyRange sub = KeyLayout::Intersect(part, pieces_[i]->keys());
    const FlatRange f = layout_.Flat(sub);
    Frame slice = empty ? Frame()
                        : Frame::Share(held->data() + (f.begin - base) * sizeof(float),
                                       f.size() * sizeof(float), held);
    Status s =
        pieces_[i]->Push(slot, clock, sub, std::move(slice), samples, sample_hash, lr).status();
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  return first_error;
}

bool RangeShard::PullReady(const KeyRange& part, int64_t clock) const {
  const auto [first, last] = Touched(part);
  for (size_t i = first; i < last; ++i) {
    if (!pieces_[i]->PullReady(clock)) return false;
  }
  return true;
}

Status RangeShard::CheckPullClock(const KeyRange& part, int64_t clock) const {
  const auto [first, last] = Touched(part);
  for (size_t i = first; i < last; ++i) {
    const int64_t newest = pieces_[i]->NewestWaitableClock();
    if (clock > newest) {
      return InvalidArgument("a pull of keys " + ToString(part) + " for the weights after clock " +
                             std::to_string(clock) + ": keys " + ToString(pieces_[i]->keys()) +
                             " are at clock " + std::to_string(pieces_[i]->version()) +
                             ", and a pull may wait for clock " + std::to_string(newest) +
                             " at most");
    }
  }
  return OkStatus();
}

void RangeShard::AppendWeights(const KeyRange& part, WireType wire, Message* frames) {
  const auto [first, last] = Touched(part);
  const bool coded = wire == WireType::kFloat16 || wire == WireType::kBfloat16;
  size_t at = layout_.Flat(part).begin;  // where the next frame's values start
  for (size_t i = first; i < last; ++i) {
    DenseShard& piece = *pieces_[i];
    const FlatRange f = layout_.Flat(KeyLayout::Intersect(part, piece.keys()));
    if (f.begin > at) {  // padding between two tensors
      frames->push_back(Frame::Share(zeros_->data(), (f.begin - at) * WireBytes(wire), zeros_));
    }
    at = f.end;
    const size_t offset = f.begin - piece.flat().begin;
    if (coded) {
      std::shared_ptr<const std::vector<uint16_t>> snap = piece.CodedSnapshot(wire);
      frames->push_back(Frame::Share(snap->data() + offset, f.size() * 2, snap));
    } else {
      std::shared_ptr<const std::vector<float>> snap = piece.Snapshot();
      frames->push_back(Frame::Share(snap->data() + offset, f.size() * sizeof(float), snap));
    }
  }
}

Status RangeShard::ApplyReplicated(const DenseShard::Update& u) {
  const auto [first, last] = Touched(u.part);
  if (last - first != 1) {
    return InvalidArgument("replicated update of keys " + ToString(u.part) +
                           " is not within one piece of " + ToString(keys_));
  }
  return pieces_[first]->ApplyReplicated(u);
}

double RangeShard::SumSquares() const {
  double sum = 0;
  for (const auto& p : pieces_) sum += p->SumSquares();
  return sum;
}

uint64_t RangeShard::Digest() const {
  uint64_t sum = 0;
  for (const auto& p : pieces_) sum += p->Digest();
  return sum;
}

size_t RangeShard::block_count() const {
  size_t n = 0;
  for (const auto& p : pieces_) n += p->block_count();
  return n;
}

int64_t RangeShard::updates_applied() const {
  int64_t n = 0;
  for (const auto& p : pieces_) n = std::max(n, p->updates_applied());
  return n;
}

void RangeShard::Save(BinaryWriter& w) const {
  std::vector<const DenseShard*> all;
  for (const auto& p : pieces_) all.push_back(p.get());
  DenseShard::SaveRange(w, all);
}

Status RangeShard::Load(BinaryReader& r) {
  std::vector<DenseShard*> all;
  for (const auto& p : pieces_) all.push_back(p.get());
  return DenseShard::LoadRange(r, all);
}

bool RangeShard::AddCut(int64_t clock) {
  bool ok = true;
  for (const auto& p : pieces_) ok = p->AddCut(clock) && ok;
  return ok;
}

bool RangeShard::CutTaken(int64_t clock) const {
  return std::all_of(pieces_.begin(), pieces_.end(),
                     [clock](const auto& p) { return p->HasCutImage(clock); });
}

std::vector<DenseShard::Image> RangeShard::TakeCut(int64_t clock) {
  std::vector<DenseShard::Image> images;
  images.reserve(pieces_.size());
  for (const auto& p : pieces_) images.push_back(p->TakeCutImage(clock));
  return images;
}

void RangeShard::DropCut(int64_t clock) {
  for (const auto& p : pieces_) p->DropCut(clock);
}

void RangeShard::ClearCuts() {
  for (const auto& p : pieces_) p->ClearCuts();
}

std::string RangeShard::Waiting(const KeyRange& part, int64_t clock) const {
  const auto [first, last] = Touched(part);
  for (size_t i = first; i < last; ++i) {
    if (!pieces_[i]->PullReady(clock)) return pieces_[i]->Waiting();
  }
  return "keys " + ToString(part) + " at clock " + std::to_string(clock) + ": ready";
}

}  // namespace pstrain
