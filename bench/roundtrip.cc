// Full-model push + pull round trips between a PsClient and a real
// parameter server over TCP loopback (the server runs its loop on a second
// thread; this program plays the coordinator). Prints one JSON line:
//   {"bench":"ps_roundtrip","servers":S,"floats":N,"mb_per_roundtrip":..,
//    "roundtrips_per_s":..,"mb_per_s":..,"median_ms":..}
// mb_per_s counts the bytes pushed plus the bytes pulled.
//
// usage: build/bench/pstrain_bench_roundtrip [--servers S] [--rounds N]
#include <capnp/message.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/model.h"
#include "common/msg/codec.h"
#include "common/node.h"
#include "paramserver/server.h"
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

  ZmqContext ctx;
  auto router = *Socket::Create(ctx, SocketKind::kRouter, SocketOptions{});
  const std::string endpoint = *router->Bind("tcp://127.0.0.1:*");
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int s = 0; s < servers; ++s) {
    threads.emplace_back([&, s] {
      ServerOptions o;
      o.coordinator = endpoint;
      o.requested_id = s;
      int code = 0;
      Status st = RunServer(o, &stop, &code);
      if (!st.ok()) std::fprintf(stderr, "server: %s\n", st.message().c_str());
    });
  }
  // Play the coordinator: registrations, assignments, readiness.
  std::vector<std::pair<std::string, ServerEntry>> regs;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto receive = [&](Message* m) {
    while (std::chrono::steady_clock::now() < give_up) {
      if (!*router->WaitReadable(std::chrono::milliseconds(100))) continue;
      if (*router->Recv(m, 2)) return;
    }
    std::fprintf(stderr, "pstrain_bench_roundtrip: the servers did not start within 60 s\n");
    std::exit(1);
  };
  while (static_cast<int>(regs.size()) < servers) {
    Message m;
    receive(&m);
    (void)WithDecoded<msg::Control>(m[1], [&](msg::Control::Reader c) {
      if (c.which() == msg::Control::REGISTER) {
        regs.push_back({std::string(reinterpret_cast<const char*>(m[0].data()), m[0].size()),
                        {c.getRegister().getRequestedId(),
                         c.getRegister().getDataEndpoint(),
                         {},
                         0,
                         {},
                         {},
                         {}}});
      }
      return OkStatus();
    });
  }
  NodeAssignment a;
  a.membership_epoch = 1;
  a.job_text = job;
  a.job_name = "bench.toml";
  a.job_base_dir = "/";
  a.input_dim = 784;
  a.num_classes = 10;
  a.workers = {0};
  a.worker_incarnations = {1};
  a.heartbeat_ms = 1000;
  a.timeout_ms = 600000;
  for (auto& [id, e] : regs) {
    e.ranges = {slices[e.id]};
    a.servers.push_back(e);
  }
  for (auto& [identity, e] : regs) {
    a.node_id = e.id;
    capnp::MallocMessageBuilder m;
    BuildAssignment(a, m.initRoot<msg::Control>().initAssignment());
    Message frames;
    frames.push_back(Frame::Copy(identity));
    frames.push_back(EncodeFrame(m));
    (void)router->Send(frames);
  }
  for (int ready = 0; ready < servers;) {
    Message m;
    receive(&m);
    (void)WithDecoded<msg::Control>(m[1], [&](msg::Control::Reader c) {
      if (c.which() == msg::Control::READY) ++ready;
      return OkStatus();
    });
  }

  auto client = *PsClient::Connect(ctx, keys, a.servers, {0, 1, 1});
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
  // Tell the servers to stop (a Shutdown on their control sockets).
  for (auto& [identity, e] : regs) {
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initShutdown().setExitCode(0);
    Message frames;
    frames.push_back(Frame::Copy(identity));
    frames.push_back(EncodeFrame(m));
    (void)router->Send(frames);
  }
  for (auto& t : threads) t.join();

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
