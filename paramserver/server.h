// A parameter server process (`pstrain server --join tcp://HOST:PORT`):
// binds a data ROUTER, registers with the coordinator, builds the shards of
// the key ranges it is assigned (initialised exactly as a standalone run
// would initialise them), and then serves pushes and pulls until the
// coordinator says stop. Single-threaded: one loop polls the control and
// data sockets; a shard is never touched by two threads.
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include "common/base/status.h"
#include "common/net/zmq_socket.h"

namespace pstrain {

struct ServerOptions {
  std::string coordinator;  // tcp://host:port of the coordinator
  int requested_id = -1;    // --id; -1: let the coordinator choose
  std::string bind_address = "127.0.0.1";
  std::optional<CurveKeyPair> key;  // the job key: every socket uses CurveZMQ
  std::string launch_token;         // from the job's launcher, if it started this node
};

// Returns when the coordinator shuts the job down (its exit code in
// *exit_code), when *stop becomes true, or on an error that stops the server.
Status RunServer(const ServerOptions& options, const std::atomic<bool>* stop, int* exit_code);

}  // namespace pstrain
