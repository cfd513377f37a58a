// The seam between a worker's weight pipeline (weight_pipeline.h) and the
// parameter servers.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/base/status.h"
#include "common/ps/keys.h"

namespace pstrain {

// What the pipeline needs of the parameter servers: asynchronous pulls of
// key ranges into memory, completed or abandoned. PsClient is one; tests
// use fakes that answer late, twice, out of order or never.
class WeightSource {
 public:
  using Ticket = uint64_t;
  virtual ~WeightSource() = default;
  // Starts a pull of the weights of `range` after `clock` steps (0: the
  // newest), written into the flat array based at `flat` when they come.
  virtual StatusOr<Ticket> Pull(const KeyRange& range, float* flat, int64_t clock) = 0;
  virtual Status Wait(Ticket ticket, std::chrono::milliseconds deadline) = 0;
  // After this no reply of `ticket` may write anything.
  virtual void Abandon(Ticket ticket) = 0;
};

}  // namespace pstrain
