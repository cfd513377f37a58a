// A server's update path alone, in one process, against memcpy of the same
// bytes. Each step, W slots push a gradient for every value of a range (as
// zero-copy frames, as they arrive from the network); the shard checks them,
// sums them in slot order, applies the optimizer and snapshots the weights
// for pulls: what a BSP server does once per step, without the network.
// Prints, per optimizer and range size, one JSON line:
//   {"bench":"server_update","optimizer":..,"floats":N,"slots":W,
//    "steps_per_s":..,"gb_per_s":..,"memcpy_gb_per_s":..,"vs_memcpy":..}
// gb_per_s counts the gradient bytes taken in (W·N·4 per step);
// memcpy_gb_per_s copies N·4 bytes from one buffer to another, in the same
// run; vs_memcpy is their ratio.
//
// usage: build/bench/pstrain_bench_update [--slots 2] [--seconds 1]
//                                         [--floats 235146,16777216]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/base/json.h"
#include "common/base/rng.h"
#include "common/nn/optimizer.h"
#include "common/nn/tensor.h"
#include "common/ps/keys.h"
#include "paramserver/dense_shard.h"
#include "paramserver/range_shard.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Copies of n floats per second, for about `seconds`.
double MemcpyGbPerS(size_t n, double seconds) {
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  int64_t copies = 0;
  const auto t0 = Clock::now();
  while (Seconds(Clock::now() - t0) < seconds) {
    std::memcpy(copies % 2 ? a.data() : b.data(), copies % 2 ? b.data() : a.data(),
                n * sizeof(float));
    ++copies;
  }
  return static_cast<double>(copies) * n * sizeof(float) / Seconds(Clock::now() - t0) / 1e9;
}

struct Result {
  double steps_per_s;
  double gb_per_s;
};

Result Updates(OptimizerKind kind, size_t n, int slots, double seconds) {
  TensorLayout tensors;
  tensors.Add("w", {static_cast<int64_t>(n)});
  const KeyLayout keys(tensors);
  Rng rng(1);
  std::vector<float> initial(keys.Flat(keys.all()).size());
  for (float& w : initial) w = static_cast<float>(rng.Normal()) * 0.05f;
  ShardOptions options;
  options.slots = slots;
  options.optimizer.kind = kind;
  // Cut into pieces, as a server with cluster.overlap (the default) holds it.
  RangeShard shard(keys, keys.all(), initial, options, /*cut=*/true);
  std::vector<std::shared_ptr<std::vector<float>>> grads;
  for (int s = 0; s < slots; ++s) {
    grads.push_back(std::make_shared<std::vector<float>>(initial.size()));
    for (float& g : *grads.back()) g = static_cast<float>(rng.Normal()) * 1e-3f;
  }
  int64_t clock = 0;
  Message frames;
  const auto t0 = Clock::now();
  while (Seconds(Clock::now() - t0) < seconds || clock < 3) {
    for (int s = 0; s < slots; ++s) {
      const std::vector<float>& g = *grads[static_cast<size_t>(s)];
      // What the server checks before it takes a gradient.
      if (FirstNonFinite(g) != g.size()) std::abort();
      Frame f = Frame::Share(g.data(), g.size() * sizeof(float), grads[static_cast<size_t>(s)]);
      if (!shard.Push(s, clock, keys.all(), std::move(f), 1, 0, 1e-3f).ok()) std::abort();
    }
    ++clock;
    if (!shard.PullReady(keys.all(), clock)) std::abort();
    frames.clear();
    shard.AppendWeights(keys.all(), WireType::kFloat32, &frames);  // the snapshot pulls share
  }
  const double s = Seconds(Clock::now() - t0);
  return {static_cast<double>(clock) / s,
          static_cast<double>(clock) * slots * n * sizeof(float) / s / 1e9};
}

int Main(int argc, char** argv) {
  int slots = 2;
  double seconds = 1.0;
  std::vector<size_t> sizes = {235146, 16777216};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--slots") {
      slots = std::atoi(value.c_str());
    } else if (flag == "--seconds") {
      seconds = std::atof(value.c_str());
    } else if (flag == "--floats") {
      sizes.clear();
      for (size_t p = 0; p < value.size();) {
        const size_t comma = std::min(value.find(',', p), value.size());
        sizes.push_back(std::strtoull(value.substr(p, comma - p).c_str(), nullptr, 10));
        p = comma + 1;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (slots < 1 || seconds <= 0 || sizes.empty()) {
    std::fprintf(stderr, "usage: %s [--slots W >= 1] [--seconds S > 0] [--floats N,N..]\n",
                 argv[0]);
    return 2;
  }
  const std::pair<const char*, OptimizerKind> kinds[] = {{"sgd", OptimizerKind::kSgd},
                                                         {"momentum", OptimizerKind::kMomentum},
                                                         {"adagrad", OptimizerKind::kAdagrad},
                                                         {"adam", OptimizerKind::kAdam}};
  for (size_t n : sizes) {
    for (const auto& [name, kind] : kinds) {
      const double copy = MemcpyGbPerS(n, seconds / 2);
      const Result r = Updates(kind, n, slots, seconds);
      std::printf("%s\n", JsonObject()
                              .Add("bench", "server_update")
                              .Add("optimizer", name)
                              .Add("floats", static_cast<int64_t>(n))
                              .Add("slots", slots)
                              .Add("steps_per_s", r.steps_per_s)
                              .Add("gb_per_s", r.gb_per_s)
                              .Add("memcpy_gb_per_s", copy)
                              .Add("vs_memcpy", r.gb_per_s / copy)
                              .str()
                              .c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace pstrain

int main(int argc, char** argv) { return pstrain::Main(argc, argv); }
