// Full-model push + pull round trips between a PsClient and a real
// parameter server over TCP loopback (the server runs its loop on a second
// thread; this program plays the coordinator). Prints one JSON line:
//   {"bench":"ps_roundtrip","servers":S,"floats":N,"mb_per_roundtrip":..,
//    "roundtrips_per_s":..,"mb_per_s":..,"median_ms":..}
// mb_per_s counts the bytes pushed plus the bytes pulled.
//
// usage: build/bench/pstrain_bench_roundtrip [--servers S] [--rounds N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_cluster.h"
#include "common/base/json.h"
#include "common/msg/codec.h"
#include "common/nn/model.h"
#include "worker/ps_client.h"

namespace pstrain {
namespace {

int Main(int argc, char** argv) {
  int servers = 1, rounds = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--servers") == 0) servers = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  const std::string fashion = "/usr/share/datasets/fashion-mnist/";
  const std::string job =
      "[data]\ntrain_images=\"" + fashion + "train-images-idx3-ubyte.gz\"\ntrain_labels=\"" +
      fashion + "train-labels-idx1-ubyte.gz\"\ntest_images=\"" + fashion +
      "t10k-images-idx3-ubyte.gz\"\ntest_labels=\"" + fashion + "t10k-labels-idx1-ubyte.gz\"\n" +
      "[model]\nlayers=[{type=\"dense\",units=256},{type=\"relu\"},{type=\"dense\",units=128},"
      "{type=\"relu\"},{type=\"dense\",units=10}]\n[optimizer]\ntype=\"sgd\"\nlr=0.001\n"
      "[cluster]\nconsistency=\"asp\"\n";
  auto model = *Model::Build({{"dense", 256}, {"relu"}, {"dense", 128}, {"relu"}, {"dense", 10}},
                             784, 10, 1);
  const KeyLayout keys(model->layout());
  const std::vector<KeyRange> slices = *SliceKeys(keys, servers);

  bench::BenchCluster cluster(
      {servers, 1, job, 784, 10, [&](int id) { return std::vector<KeyRange>{slices[id]}; }});
  auto client = *PsClient::Connect(cluster.ctx(), keys, cluster.servers(), {0, 1, 1});
  std::vector<float> grads(model->params().size(), 0.0f), weights(model->params().size());
  std::vector<double> ms;
  const auto deadline = std::chrono::seconds(60);
  for (int r = 0; r < rounds + 20; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    auto push = client->Push(keys.all(), grads.data(), {0, r, 0.0f, 1, 0});
    auto pull = client->Pull(keys.all(), weights.data(), 0);
    if (!client->Wait(*push, deadline).ok() || !client->Wait(*pull, deadline).ok()) return 1;
    if (!client->WaitBuffersReleased(deadline).ok()) return 1;
    if (r >= 20) {  // warm-up excluded
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  double total = 0;
  for (double v : ms) total += v;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double mb = 2.0 * keys.Flat(keys.all()).size() * sizeof(float) / 1e6;
  const double per_s = ms.size() / (total / 1000.0);
  std::printf("%s\n", JsonObject()
                          .Add("bench", "ps_roundtrip")
                          .Add("servers", servers)
                          .Add("floats", static_cast<int64_t>(keys.Flat(keys.all()).size()))
                          .Add("mb_per_roundtrip", mb)
                          .Add("roundtrips_per_s", per_s)
                          .Add("mb_per_s", mb * per_s)
                          .Add("median_ms", sorted[sorted.size() / 2])
                          .str()
                          .c_str());
  return 0;
}

}  // namespace
}  // namespace pstrain

int main(int argc, char** argv) { return pstrain::Main(argc, argv); }
