// A worker process (`pstrain worker --join tcp://HOST:PORT`): registers with
// the coordinator, loads the data and builds the model its assignment
// describes, connects to every parameter server, then trains the epochs and
// evaluates the test rows the coordinator hands it. Each step: pull fresh
// weights, forward, backward, and push each layer's gradients as soon as
// backward produces them. Single-threaded; heartbeats go out from its waits.
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
  // For fault tests: evaluation waits (answering the coordinator and
  // sending heartbeats) until this file exists. Set from the environment
  // variable PSTRAIN_FAULT_EVAL_GATE; empty in real jobs.
  std::string eval_gate;
};

Status RunWorker(const WorkerOptions& options, const std::atomic<bool>* stop, int* exit_code);

}  // namespace pstrain
