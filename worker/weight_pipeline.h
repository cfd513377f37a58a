// How a worker's model gets the weights of each step: pulls from the
// parameter servers into two staging buffers, and their installation into
// the model. A step's weights are those after `clock` steps; the weights of
// clock c land in staging buffer c % 2.
//
// Without overlap, Pull() fetches every key and copies it into the model.
// With overlap (BSP with cluster.overlap), each parameter group (a node's
// tensors, Model::param_groups) is pulled on its own and installed just
// before the forward pass reads it (the hook of BeforeForward()): the model
// is bound to the staging buffer of its clock, nothing is copied, and the
// other buffer keeps the weights of the clock before, which Rewind() binds
// back when a step must be computed again.
//
// The pipeline never lets a late reply land in the buffer the model reads:
// a pull it gives up on (an error, a rewind, a new whole-model pull) is
// abandoned, and the source must then drop its replies.
//
// Owned by the worker's thread, like the model and the source.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "common/base/status.h"
#include "common/nn/model.h"
#include "common/ps/keys.h"
#include "worker/weight_source.h"

namespace pstrain {

class WeightPipeline {
 public:
  WeightPipeline(Model& model, const KeyLayout& keys, WeightSource& source, bool overlap,
                 std::chrono::milliseconds deadline);

  bool overlap() const { return overlap_; }
  // The clock of the weights in the model (-1: none yet).
  int64_t version() const { return version_; }

  // Every key's weights of `clock`, asking the servers for `want` (ASP: 0,
  // the newest), into the model once all of them arrived; the model keeps
  // its weights until then. Forgets the group pulls in flight.
  Status Pull(int64_t clock, int64_t want);

  // Overlap: the clock the next forward pass needs.
  void set_want_clock(int64_t clock) { want_clock_ = clock; }
  // Overlap: sends the pulls of `clock` not in flight, first groups first.
  Status Prefetch(int64_t clock);
  // Overlap: waits for group g's weights of the wanted clock and installs them.
  Status Install(size_t g);
  // Overlap: every group's weights of `clock` in the model.
  Status InstallAll(int64_t clock);
  // Overlap: groups already at a later clock go back to `clock`'s weights,
  // and the pulls in flight are forgotten. The model must be at `clock` or
  // one later in every group.
  void Rewind(int64_t clock);
  // Abandons the group pulls in flight: no late reply overwrites weights.
  void ForgetPulls();

  // The hook for Model::TrainStep: installs each group before the forward
  // pass reads it (null without overlap). When it stops a step,
  // forward_status() says why.
  Model::WeightsNeededFn BeforeForward();
  const Status& forward_status() const { return forward_status_; }
  // Seconds the forward pass spent waiting for weights since the last reset.
  double TakeForwardWait();

 private:
  struct GroupPull {
    int group = 0;
    KeyRange keys;
    WeightSource::Ticket ticket = 0;
    int64_t pulling = -1;    // the clock the pull in flight brings into Staging(); -1: none
    int64_t installed = -1;  // the clock of this group's weights in the model
  };
  float* Staging(int64_t clock) { return staging_[clock & 1].data(); }

  Model& model_;
  const KeyLayout& keys_;
  WeightSource& source_;
  bool overlap_;
  std::chrono::milliseconds deadline_;
  FloatBuffer staging_[2];
  int64_t version_ = -1;
  int64_t want_clock_ = 0;
  std::vector<GroupPull> groups_;
  std::vector<size_t> tensor_group_;  // layout tensor -> its entry in groups_
  Status forward_status_;
  double forward_wait_s_ = 0;
};

}  // namespace pstrain
