// A worker process (`pstrain worker --join tcp://HOST:PORT`): registers with
// the coordinator, loads the data and builds the model its assignment
// describes, connects to every parameter server, then trains the epochs and
// evaluates the test rows the coordinator hands it. Each step: pull fresh
// weights, forward, backward, and push each layer's gradients as soon as
// backward produces them. The training runs on one thread; the heartbeats
// go out from the control link's own thread (common/net/control_link.h),
// so a long step or evaluation is not mistaken for death.
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include "common/base/status.h"
#include "common/net/zmq_socket.h"

namespace pstrain {

struct WorkerOptions {
  std::string coordinator;
  int requested_id = -1;
  std::optional<CurveKeyPair> key;  // the job key: every socket uses CurveZMQ
  std::string launch_token;         // from the job's launcher, if it started this node
  // For fault tests: evaluation waits (answering the coordinator) until
  // this file exists. Set from the environment
  // variable PSTRAIN_FAULT_EVAL_GATE; empty in real jobs.
  std::string eval_gate;
  // For fault tests: the main thread stands still this long once, in the
  // second step of its first epoch, as it would in one very long step on an
  // overloaded machine. From PSTRAIN_FAULT_STALL_MS; 0 in real jobs.
  int stall_ms = 0;
  // For fault tests: step `step_gate_at` of every epoch waits (answering
  // the coordinator) until the file `step_gate` exists. From
  // PSTRAIN_FAULT_STEP_GATE=FILE@STEP; unset in real jobs.
  std::string step_gate;
  int64_t step_gate_at = -1;
};

Status RunWorker(const WorkerOptions& options, const std::atomic<bool>* stop, int* exit_code);

}  // namespace pstrain
