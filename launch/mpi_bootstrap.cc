// Start-up under mpirun: the only MPI calls in pstrain (Init, the exchange
// of host names and of the coordinator's address, Finalize). After them no
// rank depends on MPI, so a dead rank cannot wedge a collective.
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "common/base/logging.h"
#include "common/net/zmq_socket.h"
#include "coordinator/console.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics_log.h"
#include "launch/roles.h"

namespace pstrain {

bool UnderMpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

int RunMpiJob(const JobSource& given, char** argv, const std::string& log_level,
              const std::atomic<bool>* stop) {
  (void)argv;
  MPI_Init(nullptr, nullptr);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int servers = given.config.cluster.servers;
  const int workers = size - 1 - servers;
  // The ranks decide how many workers there are.
  JobSource job = given;
  if (workers >= 1) {
    job.config.cluster.workers = workers;
    job.overrides.push_back({"cluster.workers", std::to_string(workers)});
  }
  const JobConfig& c = job.config;

  // Where do the ranks run? Loopback only works when all share one host.
  // A host is its name and the address it listens on (hosts emulated in
  // network namespaces share a name).
  StatusOr<std::string> bind = ResolveBindAddress(c.cluster.bind);
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  if (bind.ok() && bind->rfind("127.", 0) != 0) {
    std::snprintf(name + std::strlen(name), sizeof name - std::strlen(name), "@%s", bind->c_str());
  }
  std::vector<char> names(static_cast<size_t>(size) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME,
                MPI_CHAR, MPI_COMM_WORLD);
  std::set<std::string> hosts;
  for (int r = 0; r < size; ++r)
    hosts.insert(names.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME);

  std::string problem;
  if (workers < 1) {
    problem = "mpirun started " + std::to_string(size) + " ranks: with --servers " +
              std::to_string(servers) + " that leaves no worker (need at least " +
              std::to_string(servers + 2) + " ranks)";
  } else if (hosts.size() > 1 && c.cluster.bind.rfind("127.", 0) == 0) {
    problem = "the ranks run on " + std::to_string(hosts.size()) +
              " hosts, but cluster.bind is the loopback address " + c.cluster.bind +
              ": give --bind INTERFACE (e.g. --bind eth0) so that every rank listens where the "
              "others can reach it";
  }
  if (problem.empty() && !bind.ok()) problem = bind.status().message();
  std::optional<CurveKeyPair> key;
  if (problem.empty()) {
    StatusOr<std::optional<CurveKeyPair>> k = JobSecurity(c.key_path, c.insecure, *bind);
    if (k.ok()) {
      key = *k;
    } else {
      problem = k.status().message();
    }
  }
  // Every rank must agree on stopping, or the ones that carry on would wait.
  int bad = problem.empty() ? 0 : 1, any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any_bad != 0) {
    if (!problem.empty() && (rank == 0 || bad))
      std::fprintf(stderr, "pstrain: %s\n", problem.c_str());
    MPI_Finalize();
    return 2;
  }

  ZmqContext ctx;
  if (key.has_value()) {
    Status st = ctx.EnableCurve(*key);
    if (!st.ok()) std::fprintf(stderr, "pstrain: %s\n", st.message().c_str());
  }
  std::unique_ptr<Console> console;
  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<Coordinator> coordinator;
  std::string endpoint, token;
  if (rank == 0) {
    auto m = MetricsLog::Open(c.metrics_path, job.resume);
    StatusOr<std::string> t = NewLaunchToken();
    if (!t.ok()) m = t.status();
    if (m.ok()) {
      metrics = std::move(*m);
      console = std::make_unique<Console>(c.progress);
      token = *t;
      coordinator = std::make_unique<Coordinator>(ctx, OptionsFor(job, *bind, token), console.get(),
                                                  metrics.get());
      auto ep = coordinator->Bind();
      if (ep.ok())
        endpoint = *ep;
      else
        std::fprintf(stderr, "pstrain: %s\n", ep.status().message().c_str());
    } else {
      std::fprintf(stderr, "pstrain: %s\n", m.status().message().c_str());
    }
  }
  // What MPI carries: the coordinator's address and the launch token, which
  // the ranks hand to their role processes in the environment.
  char buf[256] = {0}, token_buf[64] = {0};
  if (rank == 0) {
    std::snprintf(buf, sizeof buf, "%s", endpoint.c_str());
    std::snprintf(token_buf, sizeof token_buf, "%s", token.c_str());
  }
  MPI_Bcast(buf, sizeof buf, MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Bcast(token_buf, sizeof token_buf, MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  endpoint = buf;
  if (endpoint.empty()) return 1;
  if (rank != 0) ::setenv(kLaunchTokenVariable, token_buf, 1);

  if (rank == 0) {
    console->Banner("pstrain " + c.name + ": coordinator at " + endpoint + " (mpirun, " +
                    std::to_string(size) + " ranks: " + std::to_string(servers) + " server(s), " +
                    std::to_string(workers) + " worker(s) on " + std::to_string(hosts.size()) +
                    " host(s)), " + std::string(ConsistencyName(c.cluster.consistency)));
    StatusOr<FinalStats> f = coordinator->Run(stop);
    if (!f.ok()) {
      std::fprintf(stderr, "pstrain: %s\n", f.status().message().c_str());
      return f.status().code() == StatusCode::kCancelled ? 130 : 1;
    }
    console->Final(*f);
    Status s = metrics->WriteFinal(*f);
    return s.ok() ? 0 : 1;
  }
  // Servers and workers become plain role processes, named in `ps`.
  const bool is_server = rank <= servers;
  const int id = is_server ? rank - 1 : rank - 1 - servers;
  std::vector<std::string> args = {"pstrain",     is_server ? "server" : "worker",
                                   "--id",        std::to_string(id),
                                   "--join",      endpoint,
                                   "--log-level", log_level};
  if (is_server) {
    args.push_back("--bind");
    args.push_back(*bind);
  }
  for (const std::string& f : SecurityFlags(c)) args.push_back(f);
  std::vector<char*> exec_argv;
  for (std::string& a : args) exec_argv.push_back(a.data());
  exec_argv.push_back(nullptr);
  const std::string self = SelfExecutable();
  ::execv(self.c_str(), exec_argv.data());
  std::perror("pstrain: exec");
  return 1;
}

}  // namespace pstrain
