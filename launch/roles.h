// The launch side of pstrain's processes: the local launcher, the mpirun
// bootstrap, and the single-role commands. Only launch/ reads the
// environment, spawns processes or calls MPI.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/job/config.h"
#include "common/net/zmq_socket.h"
#include "coordinator/coordinator.h"
#include "launch/flags.h"

namespace pstrain {

// Everything the coordinator needs to hand the job to its nodes.
struct JobSource {
  JobConfig config;
  std::string text;      // the job file's bytes
  std::string path;      // as given
  std::string base_dir;  // the job file's folder
  std::vector<ConfigOverride> overrides;
  bool resume = false;  // --resume
};
StatusOr<JobSource> ReadJobSource(const std::string& path,
                                  const std::vector<ConfigOverride>& overrides);

// `pstrain train JOB` without --standalone: this process is the coordinator;
// it starts S servers and W workers as child processes on this machine and
// waits for all of them. Returns the job's exit code.
int RunLocalJob(const JobSource& job, const std::string& log_level, const std::atomic<bool>* stop);

// True when started by mpirun (Open MPI's environment is present).
bool UnderMpirun();
// `mpirun -np N pstrain train JOB --servers S`: rank 0 coordinates, ranks
// 1..S serve, the rest work. MPI hands out the coordinator's address and is
// then finalised; the servers and workers replace themselves (exec) with
// `pstrain server|worker --id I --join ADDRESS`.
int RunMpiJob(const JobSource& job, char** argv, const std::string& log_level,
              const std::atomic<bool>* stop);

// `pstrain server|worker --join ...`. Returns the exit code.
int RunRole(const CommandLine& cl, const std::atomic<bool>* stop);

// The job key named by security.key (checked), or none. Without a key only
// a loopback bind address is allowed, unless `insecure`.
StatusOr<std::optional<CurveKeyPair>> JobSecurity(const std::string& key_path, bool insecure,
                                                  const std::string& bind_address);
// --key FILE / --insecure for the node processes a launcher starts.
std::vector<std::string> SecurityFlags(const JobConfig& c);

// The environment variable that hands a job's launch token to the nodes
// its launcher starts (CoordinatorOptions::launch_token). The environment of
// a process is readable only by its user, unlike its command line.
inline constexpr const char* kLaunchTokenVariable = "PSTRAIN_LAUNCH_TOKEN";
// The coordinator's options for `job`, listening on `bind`.
CoordinatorOptions OptionsFor(const JobSource& job, const std::string& bind,
                              const std::string& launch_token);
// 128 random bits in hex, from the kernel's generator.
StatusOr<std::string> NewLaunchToken();

// This program's own file (the target of /proc/self/exe), so that a
// process exec'd from it is named "pstrain" in the process table, not "exe";
// "/proc/self/exe" itself when the link cannot be read.
std::string SelfExecutable();

// DIR/coordinator (DIR: checkpoint.dir): the port a job's coordinator
// listens on and the launch token its nodes carry, so a coordinator
// restarted with --resume listens where the nodes that outlived the one
// before look for it, and admits them. Mode 0600: the token admits nodes.
struct CoordinatorRecord {
  int port = 0;
  std::string launch_token;
};
std::optional<CoordinatorRecord> ReadCoordinatorRecord(const std::string& dir);
Status WriteCoordinatorRecord(const std::string& dir, const CoordinatorRecord& r);

// The address to bind for `bind` (an IP address or an interface name).
StatusOr<std::string> ResolveBindAddress(const std::string& bind);

}  // namespace pstrain
