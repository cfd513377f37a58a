#include "worker/weight_pipeline.h"

#include <cstring>
#include <string>

namespace pstrain {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

WeightPipeline::WeightPipeline(Model& model, const KeyLayout& keys, WeightSource& source,
                               bool overlap, std::chrono::milliseconds deadline)
    : model_(model), keys_(keys), source_(source), overlap_(overlap), deadline_(deadline) {
  staging_[0] = FloatBuffer(model_.params().size());
  if (!overlap_) return;
  staging_[1] = FloatBuffer(model_.params().size());
  const TensorLayout& layout = model_.layout();
  tensor_group_.assign(static_cast<size_t>(layout.count()), 0);
  const std::vector<ParamGroup>& groups = model_.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    const ParamGroup& group = groups[i];
    const TensorSpec& last = layout[group.last_tensor - 1];
    GroupPull g;
    g.group = static_cast<int>(i);
    g.keys = keys_.Covering(layout[group.first_tensor].offset, last.offset + last.size);
    for (int t = group.first_tensor; t < group.last_tensor; ++t) {
      tensor_group_[static_cast<size_t>(t)] = groups_.size();
    }
    groups_.push_back(g);
  }
}

Status WeightPipeline::Pull(int64_t clock, int64_t want) {
  // Overlap: into this clock's buffer, which every group then reads, so the
  // other keeps the replaced weights for Rewind. Without overlap: copied
  // into the model.
  float* staging = overlap_ ? Staging(clock) : staging_[0].data();
  ForgetPulls();
  ASSIGN_OR_RETURN(WeightSource::Ticket t, source_.Pull(keys_.all(), staging, want));
  if (Status s = source_.Wait(t, deadline_); !s.ok()) {
    source_.Abandon(t);
    return s;
  }
  if (overlap_) {
    for (const GroupPull& g : groups_) model_.BindParams(g.group, staging);
  } else {
    std::memcpy(model_.params().data(), staging, model_.params().size() * sizeof(float));
  }
  version_ = clock;
  for (GroupPull& g : groups_) g.installed = clock;
  return OkStatus();
}

Status WeightPipeline::Prefetch(int64_t clock) {
  for (GroupPull& g : groups_) {
    if (g.pulling >= 0 || g.installed >= clock) continue;
    ASSIGN_OR_RETURN(g.ticket, source_.Pull(g.keys, Staging(clock), clock));
    g.pulling = clock;
  }
  return OkStatus();
}

Status WeightPipeline::Install(size_t i) {
  GroupPull& g = groups_[i];
  if (g.installed >= want_clock_) return OkStatus();
  if (g.pulling != want_clock_) {
    return Internal("parameter group " + std::to_string(i) + " has weights of clock " +
                    std::to_string(g.installed) + ", needs " + std::to_string(want_clock_) +
                    " and no pull brings them");
  }
  const auto t0 = Clock::now();
  Status s = source_.Wait(g.ticket, deadline_);
  forward_wait_s_ += std::chrono::duration<double>(Clock::now() - t0).count();
  g.pulling = -1;
  if (!s.ok()) {
    source_.Abandon(g.ticket);  // its answers, if they still come, land nowhere
    return s;
  }
  // The replaced weights stay in the other buffer until the pull of the
  // clock after this one, by when the step that used them is pushed (Rewind).
  model_.BindParams(g.group, Staging(want_clock_));
  g.installed = want_clock_;
  return OkStatus();
}

Status WeightPipeline::InstallAll(int64_t clock) {
  RETURN_IF_ERROR(Prefetch(clock));
  want_clock_ = clock;
  for (size_t i = 0; i < groups_.size(); ++i) RETURN_IF_ERROR(Install(i));
  version_ = clock;
  return OkStatus();
}

void WeightPipeline::Rewind(int64_t clock) {
  ForgetPulls();
  for (GroupPull& g : groups_) {
    if (g.installed > clock) {
      model_.BindParams(g.group, Staging(clock));
      g.installed = clock;
    }
  }
}

void WeightPipeline::ForgetPulls() {
  // A late reply of clock c + 2 would land in the buffer that holds clock c.
  for (GroupPull& g : groups_) {
    if (g.pulling >= 0) source_.Abandon(g.ticket);
    g.pulling = -1;
  }
}

Model::WeightsNeededFn WeightPipeline::BeforeForward() {
  if (!overlap_) return nullptr;
  return [this](int first_tensor, int) {
    forward_status_ = Install(tensor_group_[static_cast<size_t>(first_tensor)]);
    return forward_status_.ok();
  };
}

double WeightPipeline::TakeForwardWait() {
  const double s = forward_wait_s_;
  forward_wait_s_ = 0;
  forward_status_ = OkStatus();
  return s;
}

}  // namespace pstrain
