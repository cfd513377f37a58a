// Sparse row throughput of the parameter servers: C client threads (each its
// own PsClient, as a worker has) pull and push rows of an embedding table on
// S real servers (threads of this process, TCP loopback), with 1, 2 and 4
// servers in one run. Rows are spread by hash over the servers exactly as in
// training. Each request names R distinct rows (a batch's features), drawn
// from a pool of 10^6 rows scattered over a 10^7-row table. Prints one JSON
// line per server count:
//   {"bench":"sparse_rows","servers":S,"clients":C,"dim":D,"rows_per_request":R,
//    "pull_rows_per_s":..,"push_rows_per_s":..,"pull_rows_per_s_per_server":..,
//    "push_rows_per_s_per_server":..,"pull_mb_per_s":..,
//    "pull_rows_per_server_cpu_s":..,"push_rows_per_server_cpu_s":..,
//    "pull_scaling":..,"push_scaling":..}
// scaling is the total against the run with the fewest servers. On a
// machine with fewer cores than servers + clients they share the cores, so
// the scaling shows where the CPUs, not the servers, run out; rows per
// server CPU second is what one server core can do, whatever the sharing.
//
// usage: build/bench/pstrain_bench_sparse [--servers 1,2,4] [--clients 2] [--dim 16]
//                                         [--rows 4096] [--seconds 3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_cluster.h"
#include "common/base/json.h"
#include "common/base/rng.h"
#include "common/data/handout.h"
#include "common/nn/model.h"
#include "worker/ps_client.h"

namespace pstrain {
namespace {

constexpr uint64_t kTableRows = 10'000'000;
constexpr uint64_t kPoolRows = 1'000'000;

// One client: requests of `rows` distinct rows each for `seconds`, two in
// flight; returns rows per second.
double Client(bench::BenchCluster& cluster, const KeyLayout& keys, int id, int dim, int rows,
              double seconds, bool push) {
  auto client = *PsClient::Connect(cluster.ctx(), keys, cluster.servers(), {id, 1, 1});
  Rng rng(17, static_cast<uint64_t>(id));
  std::vector<std::vector<uint64_t>> requests(32);
  for (auto& r : requests) {
    while (static_cast<int>(r.size()) < rows) {
      r.push_back(Mix64(rng.Below(kPoolRows)) % kTableRows);
      if (static_cast<int>(r.size()) == rows) {
        std::sort(r.begin(), r.end());
        r.erase(std::unique(r.begin(), r.end()), r.end());
      }
    }
  }
  std::vector<float> buffer(2 * static_cast<size_t>(rows) * dim, 1e-4f);
  const auto deadline = std::chrono::milliseconds(60000);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = 0;
  PsClient::Ticket in_flight[2] = {0, 0};
  for (size_t k = 0;; ++k) {
    const auto& r = requests[k % requests.size()];
    float* buf = buffer.data() + (k % 2) * rows * dim;
    if (k >= 2 && !client->Wait(in_flight[k % 2], deadline).ok()) std::exit(1);
    in_flight[k % 2] =
        push ? *client->PushRows(0, dim, r, buf, {id, static_cast<int64_t>(k), 0.01f, 0, 0})
             : *client->PullRows(0, dim, r, buf);
    done += static_cast<int64_t>(r.size());
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= seconds) {
      break;
    }
  }
  for (int j = 0; j < 2; ++j) (void)client->Wait(in_flight[j], deadline);
  return done / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// All clients at once; returns total rows/s and the servers' CPU seconds.
std::pair<double, double> Phase(bench::BenchCluster& cluster, const KeyLayout& keys, int clients,
                                int dim, int rows, double seconds, bool push) {
  const double cpu0 = cluster.ServerCpuSeconds();
  std::vector<double> rates(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] { rates[c] = Client(cluster, keys, c, dim, rows, seconds, push); });
  }
  for (auto& t : threads) t.join();
  double total = 0;
  for (double r : rates) total += r;
  return {total, cluster.ServerCpuSeconds() - cpu0};
}

int Main(int argc, char** argv) {
  std::vector<int> server_counts = {1, 2, 4};
  int clients = 2, dim = 16, rows = 4096;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], v = argv[i + 1];
    if (flag == "--servers") {
      server_counts.clear();
      std::stringstream ss(v);
      for (std::string x; std::getline(ss, x, ',');) server_counts.push_back(std::stoi(x));
    } else if (flag == "--clients") {
      clients = std::stoi(v);
    } else if (flag == "--dim") {
      dim = std::stoi(v);
    } else if (flag == "--rows") {
      rows = std::stoi(v);
    } else if (flag == "--seconds") {
      seconds = std::stod(v);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  // The servers read the job (not the data): a sparse model over tiny files.
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("pstrain-bench-sparse-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "d.libsvm") << "1 3:1\n0 5:1\n";
  const std::string job =
      "[data]\nformat=\"libsvm\"\ntrain=\"" + (dir / "d.libsvm").string() + "\"\ntest=\"" +
      (dir / "d.libsvm").string() + "\"\nfeatures=" + std::to_string(kTableRows) +
      "\n[model]\nlayers=[{type=\"embedding\",dim=" + std::to_string(dim) +
      "}]\n[optimizer]\ntype=\"adagrad\"\nlr=0.01\n" + "[cluster]\nconsistency=\"asp\"\nservers=";
  auto model = *Model::Build({{.type = "embedding", .dim = dim}}, kTableRows, dim == 1 ? 2 : dim, 1,
                             {}, {.enabled = true});
  const KeyLayout keys(model->layout());
  double first_pull = 0, first_push = 0;
  for (int servers : server_counts) {
    // Server s holds row bucket s (and server 0 the dense bias too).
    bench::BenchCluster cluster({servers, clients, job + std::to_string(servers) + "\n",
                                 static_cast<int>(kTableRows), dim == 1 ? 2 : dim, [&](int id) {
                                   std::vector<KeyRange> r = {
                                       RowBucketRange(static_cast<uint32_t>(id))};
                                   if (id == 0) r.push_back(keys.all());
                                   return r;
                                 }});
    // Pushes first: the pulls then read rows that exist.
    const auto [push, push_cpu] = Phase(cluster, keys, clients, dim, rows, seconds, true);
    const auto [pull, pull_cpu] = Phase(cluster, keys, clients, dim, rows, seconds, false);
    if (first_pull == 0) {
      first_pull = pull;
      first_push = push;
    }
    std::printf("%s\n", JsonObject()
                            .Add("bench", "sparse_rows")
                            .Add("servers", servers)
                            .Add("clients", clients)
                            .Add("dim", dim)
                            .Add("rows_per_request", rows)
                            .Add("pull_rows_per_s", pull)
                            .Add("push_rows_per_s", push)
                            .Add("pull_rows_per_s_per_server", pull / servers)
                            .Add("push_rows_per_s_per_server", push / servers)
                            .Add("pull_mb_per_s", pull * dim * 4 / 1e6)
                            .Add("pull_rows_per_server_cpu_s", pull * seconds / pull_cpu)
                            .Add("push_rows_per_server_cpu_s", push * seconds / push_cpu)
                            .Add("pull_scaling", pull / first_pull)
                            .Add("push_scaling", push / first_push)
                            .str()
                            .c_str());
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace pstrain

int main(int argc, char** argv) { return pstrain::Main(argc, argv); }
