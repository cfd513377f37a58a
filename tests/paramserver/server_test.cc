// A real server (its loop on a thread) driven over TCP loopback by the test,
// which plays the coordinator, and by the PsClient a worker uses.
#include "paramserver/server.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <limits>
#include <optional>
#include <thread>

#include "common/base/rng.h"
#include "common/msg/codec.h"
#include "common/net/node.h"
#include "common/nn/model.h"
#include "tests/test_util.h"
#include "worker/ps_client.h"

namespace pstrain {
namespace {

constexpr auto kDeadline = std::chrono::milliseconds(30000);

// The model a fixture's job trains (4 inputs, 3 classes) and more keys of
// its [cluster] section.
struct FixtureJob {
  std::string layers = "[{type=\"dense\",units=3}]";
  std::vector<LayerSpec> specs = {{"dense", 3}};
  std::string cluster;
};

class ServerFixture {
 public:
  explicit ServerFixture(const std::string& consistency = "bsp", const FixtureJob& job = {}) {
    for (const char* f : {"a", "b", "c", "d"}) testing::WriteFile(dir_.File(f), "x");
    job_ =
        "[data]\ntrain_images=\"a\"\ntrain_labels=\"b\"\ntest_images=\"c\"\ntest_labels=\"d\"\n"
        "[model]\nlayers=" +
        job.layers +
        "\n"
        "[optimizer]\ntype=\"sgd\"\nlr=0.5\n[job]\nseed=5\n[cluster]\nworkers=2\nconsistency=\"" +
        consistency + "\"\n" + job.cluster;
    router_ = *Socket::Create(ctx_, SocketKind::kRouter, SocketOptions{});
    endpoint_ = *router_->Bind("tcp://127.0.0.1:*");
    thread_ = std::thread([this] {
      ServerOptions o;
      o.coordinator = endpoint_;
      o.requested_id = 0;
      status_ = RunServer(o, &stop_, &exit_code_);
    });
    // Registration.
    Message frames = Receive();
    identity_ = std::string(reinterpret_cast<const char*>(frames[0].data()), frames[0].size());
    REQUIRE(WithDecoded<msg::Control>(frames[1], [&](msg::Control::Reader c) {
              REQUIRE(c.which() == msg::Control::REGISTER);
              data_endpoint_ = c.getRegister().getDataEndpoint();
              local_endpoint_ = c.getRegister().getLocalEndpoint();
              host_key_ = c.getRegister().getHostKey();
              return OkStatus();
            }).ok());
    model_ = *Model::Build(job.specs, 4, 3, 1);
    model_->InitParams(5);
    keys_ = std::make_unique<KeyLayout>(model_->layout());
    NodeAssignment a;
    a.node_id = 0;
    a.membership_epoch = 1;
    a.job_text = job_;
    a.job_name = "job.toml";
    a.job_base_dir = dir_.path().string();
    a.input_dim = 4;
    a.num_classes = 3;
    a.servers = {{0, data_endpoint_, {keys_->all(), RowBucketRange(0)}, 1, {}, {}, {}}};
    a.workers = {0, 1};
    a.worker_incarnations = {100, 101};
    a.heartbeat_ms = 1000;
    a.timeout_ms = 60000;
    capnp::MallocMessageBuilder m;
    BuildAssignment(a, m.initRoot<msg::Control>().initAssignment());
    SendControl(m);
    frames = Receive();  // Ready
    REQUIRE(WithDecoded<msg::Control>(frames[1], [&](msg::Control::Reader c) {
              CHECK(c.which() == msg::Control::READY);
              return OkStatus();
            }).ok());
  }

  ~ServerFixture() {
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initShutdown().setExitCode(0);
    SendControl(m);
    thread_.join();
  }

  std::unique_ptr<PsClient> Client(int worker, uint64_t incarnation) {
    auto c = PsClient::Connect(
        ctx_, *keys_, {{0, data_endpoint_, {keys_->all(), RowBucketRange(0)}, 1, {}, {}, {}}},
        {worker, incarnation, 1});
    REQUIRE(c.ok());
    return std::move(*c);
  }

  Message Receive() {
    Message frames;
    for (int i = 0; i < 3000; ++i) {
      REQUIRE(router_->WaitReadable(std::chrono::milliseconds(10)).ok());
      auto got = router_->Recv(&frames, 4);
      REQUIRE(got.ok());
      if (*got) {
        // Skip heartbeats.
        bool heartbeat = false;
        (void)WithDecoded<msg::Control>(frames[1], [&](msg::Control::Reader c) {
          heartbeat = c.which() == msg::Control::HEARTBEAT;
          return OkStatus();
        });
        if (!heartbeat) return frames;
      }
    }
    FAIL("no message from the server");
    return frames;
  }

  void SendControl(capnp::MessageBuilder& m) {
    Message frames;
    frames.push_back(Frame::Copy(identity_));
    frames.push_back(EncodeFrame(m));
    REQUIRE(router_->Send(frames).ok());
  }

  ZmqContext ctx_;
  testing::TempDir dir_;
  std::string job_;
  std::unique_ptr<Socket> router_;
  std::string endpoint_, identity_, data_endpoint_, local_endpoint_, host_key_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  Status status_;
  int exit_code_ = -1;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KeyLayout> keys_;
};

TEST_CASE("A server starts from the seeded weights and applies a BSP step", "[paramserver][net]") {
  ServerFixture f;
  auto c0 = f.Client(0, 100);
  auto c1 = f.Client(1, 101);
  const size_t n = f.model_->params().size();
  std::vector<float> pulled(n, -7.0f);
  REQUIRE(c0->Wait(*c0->Pull(f.keys_->all(), pulled.data(), 0), kDeadline).ok());
  for (size_t i = 0; i < f.model_->layout().parameter_count(); ++i) {
    REQUIRE(pulled[i] == f.model_->params()[i]);
  }
  std::vector<float> g0(n, 1.0f), g1(n, 3.0f);
  auto p0 = c0->Push(f.keys_->all(), g0.data(), {0, 0, 0.5f, 4, 0});
  REQUIRE(p0.ok());
  REQUIRE(c0->Wait(*p0, kDeadline).ok());
  // The pull of clock 1 waits for worker 1's push.
  auto pull = c0->Pull(f.keys_->all(), pulled.data(), 1);
  REQUIRE(pull.ok());
  auto p1 = c1->Push(f.keys_->all(), g1.data(), {1, 0, 0.5f, 4, 0});
  REQUIRE(c1->Wait(*p1, kDeadline).ok());
  REQUIRE(c0->Wait(*pull, kDeadline).ok());
  const TensorSpec& w = f.model_->layout()[0];
  CHECK(pulled[w.offset] == Approx(f.model_->params()[w.offset] - 0.5f * 4.0f));
  REQUIRE(c0->WaitBuffersReleased(kDeadline).ok());
}

TEST_CASE("An abandoned pull writes nothing when its answer comes", "[paramserver][net]") {
  ServerFixture f;
  auto c0 = f.Client(0, 100);
  auto c1 = f.Client(1, 101);
  const size_t n = f.model_->params().size();
  std::vector<float> g(n, 1.0f), abandoned(n, -7.0f), fresh(n, -7.0f);
  REQUIRE(c0->Wait(*c0->Push(f.keys_->all(), g.data(), {0, 0, 0.5f, 4, 0}), kDeadline).ok());
  // Waits for worker 1's push; abandoned before it is answered.
  auto old = c0->Pull(f.keys_->all(), abandoned.data(), 1);
  REQUIRE(old.ok());
  c0->Abandon(*old);
  auto now = c0->Pull(f.keys_->all(), fresh.data(), 1);
  REQUIRE(now.ok());
  REQUIRE(c1->Wait(*c1->Push(f.keys_->all(), g.data(), {1, 0, 0.5f, 4, 0}), kDeadline).ok());
  // The server answers both, the abandoned one first, on the same socket.
  REQUIRE(c0->Wait(*now, kDeadline).ok());
  const TensorSpec& w = f.model_->layout()[0];
  CHECK(fresh[w.offset] == Approx(f.model_->params()[w.offset] - 0.5f * 2.0f));
  // (A pull zeroes the padding between tensors when it is asked; the
  // tensors' values come only with the answer.)
  for (int t = 0; t < f.model_->layout().count(); ++t) {
    const TensorSpec& spec = f.model_->layout()[t];
    INFO(spec.name);
    CHECK(std::all_of(abandoned.begin() + static_cast<long>(spec.offset),
                      abandoned.begin() + static_cast<long>(spec.offset + spec.size),
                      [](float v) { return v == -7.0f; }));
  }
  CHECK_FALSE(c0->Wait(*old, kDeadline).ok());  // forgotten: an unknown ticket
  REQUIRE(c0->WaitBuffersReleased(kDeadline).ok());
  REQUIRE(c1->WaitBuffersReleased(kDeadline).ok());
}

TEST_CASE("A gradient holding NaN or Inf is refused and names its worker", "[paramserver][net]") {
  ServerFixture f;
  auto c0 = f.Client(0, 100);
  const size_t n = f.model_->params().size();
  std::vector<float> g(n, 0.5f);
  g[3] = std::numeric_limits<float>::quiet_NaN();
  Status s = c0->Wait(*c0->Push(f.keys_->all(), g.data(), {0, 0, 0.5f, 4, 0}), kDeadline);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains("the gradient from worker 0"));
  CHECK_THAT(s.message(), Catch::Contains("holds NaN at value 3; refused"));
  // The client reports the refusal to every later wait instead of hanging.
  std::vector<float> w(n);
  CHECK(c0->Wait(*c0->Pull(f.keys_->all(), w.data(), 1), kDeadline).code() ==
        StatusCode::kInvalidArgument);
  // The weights are untouched: another client still sees the initial ones.
  auto c1 = f.Client(1, 101);
  REQUIRE(c1->Wait(*c1->Pull(f.keys_->all(), w.data(), 0), kDeadline).ok());
  CHECK(w[0] == f.model_->params()[0]);
}

TEST_CASE("Sparse rows are pushed and pulled through the client", "[paramserver][net]") {
  ServerFixture f("asp");
  auto c = f.Client(0, 100);
  const std::vector<uint64_t> rows = {7, 123456789, 7};
  std::vector<float> before(rows.size() * 8), after(rows.size() * 8);
  REQUIRE(c->Wait(*c->PullRows(3, 8, rows, before.data()), kDeadline).ok());
  CHECK(std::equal(before.begin(), before.begin() + 8, before.begin() + 16));  // row 7 twice
  std::vector<float> g(rows.size() * 8, 1.0f);
  REQUIRE(c->Wait(*c->PushRows(3, 8, rows, g.data(), {0, 1, 0.5f, 0, 0}), kDeadline).ok());
  REQUIRE(c->Wait(*c->PullRows(3, 8, rows, after.data()), kDeadline).ok());
  CHECK(after[0] == Approx(before[0] - 1.0f));  // row 7 got two gradients
  CHECK(after[8] == Approx(before[8] - 0.5f));
  auto wrong_dim = c->PullRows(3, 4, rows, after.data());
  Status s = c->Wait(*wrong_dim, kDeadline);
  CHECK_THAT(s.message(), Catch::Contains("has rows of 8 floats, not 4"));
  // A row gradient holding NaN is refused whole, naming the row; the rows
  // keep their values.
  auto c1 = f.Client(1, 101);
  g[9] = std::numeric_limits<float>::quiet_NaN();
  s = c1->Wait(*c1->PushRows(3, 8, rows, g.data(), {1, 1, 0.5f, 0, 0}), kDeadline);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains("the row gradient from worker 1 for table 3, row "
                                          "123456789 holds NaN; refused"));
  std::vector<float> again(rows.size() * 8);
  REQUIRE(c->Wait(*c->PullRows(3, 8, rows, again.data()), kDeadline).ok());
  CHECK(again == after);
  s = c->Wait(*c->PullRows(99, 8, rows, again.data()), kDeadline);
  CHECK_THAT(s.message(), Catch::Contains("sparse table 99 does not exist (at most 16 tables)"));
}

TEST_CASE("A server refuses strangers, stale incarnations and bad ranges, and keeps serving",
          "[paramserver][net]") {
  ServerFixture f;
  std::vector<float> buf(f.model_->params().size());
  SECTION("unknown worker") {
    auto c = f.Client(9, 1);
    Status s = c->Wait(*c->Pull(f.keys_->all(), buf.data(), 0), kDeadline);
    CHECK(s.code() == StatusCode::kAborted);
    CHECK_THAT(s.message(), Catch::Contains("not a live member"));
  }
  SECTION("a pull for a clock no push can reach") {
    auto c = f.Client(0, 100);
    Status s = c->Wait(*c->Pull(f.keys_->all(), buf.data(), 1000), kDeadline);
    CHECK(s.code() == StatusCode::kInvalidArgument);
    CHECK_THAT(s.message(), Catch::Contains("for the weights after clock 1000") &&
                                Catch::Contains("are at clock 0, and a pull may wait for clock "
                                                "4 at most"));
    CHECK(c->Wait(*c->Pull(f.keys_->all(), buf.data(), 0), kDeadline).ok());
  }
  SECTION("stale incarnation") {
    auto c = f.Client(0, 99);
    Status s = c->Wait(*c->Pull(f.keys_->all(), buf.data(), 0), kDeadline);
    CHECK(s.code() == StatusCode::kAborted);
    CHECK_THAT(s.message(), Catch::Contains("stale incarnation"));
  }
  SECTION("garbage on the socket") {
    auto raw = *Socket::Create(f.ctx_, SocketKind::kDealer, SocketOptions{});
    REQUIRE(raw->Connect(f.data_endpoint_).ok());
    Rng rng(3);
    for (int i = 0; i < 200; ++i) {
      Message m;
      const size_t parts = 1 + rng.Below(4);
      for (size_t p = 0; p < parts; ++p) {
        std::vector<uint8_t> bytes(rng.Below(100));
        for (auto& b : bytes) b = static_cast<uint8_t>(rng.Below(256));
        m.push_back(Frame::Copy(bytes.data(), bytes.size()));
      }
      REQUIRE(raw->Send(m).ok());
    }
  }
  SECTION("lies from a member: bad ranges, sizes and frame counts") {
    auto raw = *Socket::Create(f.ctx_, SocketKind::kDealer, SocketOptions{});
    REQUIRE(raw->Connect(f.data_endpoint_).ok());
    struct Lie {
      const char* name;
      KeyRange keys;
      uint32_t announced_frames;
      size_t payload_bytes;
      const char* expect;
    };
    const KeyRange all = f.keys_->all();
    const std::vector<Lie> lies = {
        {"keys past the end", {all.begin, all.end + 5}, 1, 60, "its end is block"},
        {"empty range", {all.begin, all.begin}, 1, 60, "is empty"},
        {"reversed range", {all.end, all.begin}, 1, 60, "ends before it begins"},
        {"no such tensor", {MakeKey(99, 0), MakeKey(99, 1)}, 1, 60, "its start is in tensor 99"},
        {"wrong payload size", all, 1, 12, "payload of 12 bytes for"},
        {"frames miscounted", all, 3, 60, "announces 3 payload frames, 1 came"},
    };
    for (const Lie& lie : lies) {
      INFO(lie.name);
      capnp::MallocMessageBuilder b;
      auto h = b.initRoot<msg::DataHeader>();
      h.setOp(msg::DataOp::PUSH);
      h.setRequestId(77);
      h.setWorkerId(0);
      h.setIncarnation(100);
      h.setMembershipEpoch(1);
      h.initKeyRange().setBegin(lie.keys.begin);
      h.getKeyRange().setEnd(lie.keys.end);
      h.setPayloadFrames(lie.announced_frames);
      h.setSampleCount(1);
      Message m;
      m.push_back(EncodeFrame(b));
      std::vector<char> payload(lie.payload_bytes);
      m.push_back(Frame::Copy(payload.data(), payload.size()));
      REQUIRE(raw->Send(m).ok());
      REQUIRE(*raw->WaitReadable(kDeadline));
      Message reply;
      REQUIRE(*raw->Recv(&reply, 4));
      REQUIRE(WithDecoded<msg::DataHeader>(reply[0], [&](msg::DataHeader::Reader r) {
                CHECK(r.getOp() == msg::DataOp::ERROR);
                CHECK(r.getRequestId() == 77);
                CHECK_THAT(std::string(r.getError().cStr()), Catch::Contains(lie.expect));
                return OkStatus();
              }).ok());
    }
  }
  // Whatever came before, a good client is still served.
  auto good = f.Client(0, 100);
  CHECK(good->Wait(*good->Pull(f.keys_->all(), buf.data(), 0), kDeadline).ok());
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

// Five BSP steps by two workers; worker 1's transport may duplicate every
// message and swap each push with the next message it sends.
std::vector<float> FiveSteps(bool faulty) {
  ServerFixture f;
  auto c0 = f.Client(0, 100);
  auto c1 = f.Client(1, 101);
  std::optional<Message> held;
  if (faulty) {
    c1->SetTransport([&held](int server, Message& m, const PsClient::SendFn& send) -> Status {
      auto copy = [](const Message& src) {
        Message out;
        for (const Frame& fr : src) out.push_back(Frame::Copy(fr.data(), fr.size()));
        return out;
      };
      Message dup = copy(m);
      bool is_push = false;
      (void)WithDecoded<msg::DataHeader>(m[0], [&](msg::DataHeader::Reader h) {
        is_push = h.getOp() == msg::DataOp::PUSH;
        return OkStatus();
      });
      if (is_push && !held) {  // hold it back: it goes out after the next one
        held = copy(m);
        m.clear();
        return send(server, dup);  // ...but a duplicate goes out now
      }
      RETURN_IF_ERROR(send(server, m));
      RETURN_IF_ERROR(send(server, dup));
      if (held) {
        Message late = std::move(*held);
        held.reset();
        RETURN_IF_ERROR(send(server, late));
      }
      return OkStatus();
    });
  }
  const TensorLayout& layout = f.model_->layout();
  const size_t n = f.model_->params().size();
  std::vector<float> g0(n), g1(n), w(n);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < n; ++i) {
      g0[i] = 0.01f * static_cast<float>((i * 7 + step) % 13);
      g1[i] = -0.02f * static_cast<float>((i * 3 + step) % 11);
    }
    std::vector<PsClient::Ticket> tickets;
    for (int t = 0; t < layout.count(); ++t) {  // one push per tensor
      const KeyRange r = f.keys_->Covering(layout[t].offset, layout[t].offset + layout[t].size);
      tickets.push_back(*c0->Push(r, g0.data(), {0, step, 0.5f, 1, 0}));
      tickets.push_back(*c1->Push(r, g1.data(), {1, step, 0.5f, 1, 0}));
    }
    auto p0 = c0->Pull(f.keys_->all(), w.data(), step + 1);
    auto p1 = c1->Pull(f.keys_->all(), w.data(), step + 1);
    Status s0 = c0->Wait(*p0, kDeadline);
    INFO(s0.ToString());
    REQUIRE(s0.ok());
    Status s1 = c1->Wait(*p1, kDeadline);
    INFO(s1.ToString());
    REQUIRE(s1.ok());
    REQUIRE(c0->WaitAll(kDeadline).ok());
    REQUIRE(c1->WaitAll(kDeadline).ok());
  }
  return w;
}

TEST_CASE("Duplicated and reordered pushes leave BSP weights exactly as a clean run",
          "[paramserver][net][fault]") {
  const std::vector<float> clean = FiveSteps(false);
  const std::vector<float> faulty = FiveSteps(true);
  CHECK(clean == faulty);
  // And the steps did change the weights.
  auto m = *Model::Build({{"dense", 3}}, 4, 3, 1);
  m->InitParams(5);
  CHECK_FALSE(std::equal(clean.begin(), clean.end(), m->params().begin()));
}

TEST_CASE("A worker may have only so many pulls waiting, and other workers are not affected",
          "[paramserver][net]") {
  ServerFixture f;
  auto c0 = f.Client(0, 100);
  auto c1 = f.Client(1, 101);
  const size_t n = f.model_->params().size();
  std::vector<float> buf(n);
  // Pulls for clock 3 wait (BSP is at clock 0); after the 64th they are refused.
  std::vector<PsClient::Ticket> tickets;
  for (int i = 0; i < 70; ++i) tickets.push_back(*c0->Pull(f.keys_->all(), buf.data(), 3));
  for (int i = 64; i < 70; ++i) {
    Status s = c0->Wait(tickets[static_cast<size_t>(i)], kDeadline);
    CHECK(s.code() == StatusCode::kResourceExhausted);
    CHECK_THAT(s.message(), Catch::Contains("pulls waiting"));
  }
  CHECK(c1->Wait(*c1->Pull(f.keys_->all(), buf.data(), 0), kDeadline).ok());
}

// A plain TCP client speaking just enough ZMTP 3.0 to announce one frame.
int ConnectTcp(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

TEST_CASE("A 2 GB length header costs that connection, and the server serves everyone else",
          "[paramserver][net]") {
  ServerFixture f;
  const int fd = ConnectTcp(f.data_endpoint_);
  std::string hello(64, '\0');
  hello[0] = '\xff';
  hello[9] = '\x7f';
  hello[10] = 3;  // ZMTP 3.0, NULL mechanism, client
  hello.replace(12, 4, "NULL");
  const std::string ready_body =
      std::string("\x05READY") + '\x0b' + "Socket-Type" + std::string("\0\0\0\x06", 4) + "DEALER";
  hello += '\x04';
  hello += static_cast<char>(ready_body.size());
  hello += ready_body;
  // One message frame (flags: long size) announcing 2^31 bytes.
  hello += '\x02';
  hello += std::string("\0\0\0\x80\0\0\0\0", 8);
  hello += "the first bytes of a message that never ends";
  REQUIRE(::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(hello.size()));
  // The server closes the connection (its ZMQ_MAXMSGSIZE refuses the
  // length before allocating) and lives on.
  bool closed = false;
  const auto until = std::chrono::steady_clock::now() + kDeadline;
  while (!closed && std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char sink[4096];
    const ssize_t got = ::recv(fd, sink, sizeof sink, 0);
    closed = got <= 0;
  }
  ::close(fd);
  CHECK(closed);
  // Everyone else is still served.
  auto c0 = f.Client(0, 100);
  std::vector<float> buf(f.model_->params().size());
  CHECK(c0->Wait(*c0->Pull(f.keys_->all(), buf.data(), 0), kDeadline).ok());
}

TEST_CASE("A client on the server's host reaches it through its ipc:// socket",
          "[paramserver][net]") {
  ServerFixture f;
  REQUIRE_THAT(f.local_endpoint_, Catch::StartsWith("ipc:///tmp/pstrain-"));
  CHECK(f.host_key_ == LocalHostKey());
  ServerEntry e{0, "tcp://127.0.0.1:1", {f.keys_->all()}, 1, {}, f.local_endpoint_, f.host_key_};
  CHECK(BestEndpoint(e) == f.local_endpoint_);
  // Port 1 answers nothing: the pull can only come back over ipc://.
  auto c = PsClient::Connect(f.ctx_, *f.keys_, {e}, {0, 100, 1});
  REQUIRE(c.ok());
  std::vector<float> pulled(f.model_->params().size(), -1.0f);
  REQUIRE((*c)->Wait(*(*c)->Pull(f.keys_->all(), pulled.data(), 0), kDeadline).ok());
  CHECK(pulled[0] == f.model_->params()[0]);
  // Another host (or namespace) gets the TCP endpoint.
  e.host_key = "elsewhere/net:1";
  CHECK(BestEndpoint(e) == "tcp://127.0.0.1:1");
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

// Three dense layers: a pull of the first is answered once the first
// layer's pushes of the step are in, whatever the others are doing.
TEST_CASE("A pull of layer 1 is answered before layer 3's pushes arrived", "[paramserver][net]") {
  for (const bool overlap : {true, false}) {
    DYNAMIC_SECTION("cluster.overlap=" << overlap) {
      FixtureJob job;
      job.layers =
          "[{type=\"dense\",units=5},{type=\"relu\"},{type=\"dense\",units=4},{type=\"relu\"},"
          "{type=\"dense\",units=3}]";
      job.specs = {{"dense", 5}, {"relu"}, {"dense", 4}, {"relu"}, {"dense", 3}};
      job.cluster = std::string("overlap=") + (overlap ? "true" : "false") + "\n";
      ServerFixture f("bsp", job);
      auto c0 = f.Client(0, 100);
      auto c1 = f.Client(1, 101);
      const TensorLayout& layout = f.model_->layout();
      // Layer i holds tensors 2i (weight) and 2i + 1 (bias).
      auto layer = [&](int i) {
        const TensorSpec& bias = layout[2 * i + 1];
        return f.keys_->Covering(layout[2 * i].offset, bias.offset + bias.size);
      };
      const size_t n = f.model_->params().size();
      std::vector<float> g(n, 1.0f), pulled(n, -7.0f);
      // Both workers' pulls of clock 1 wait first: layer 3's, then layer 1's.
      auto pull3 = c0->Pull(layer(2), pulled.data(), 1);
      auto pull1 = c0->Pull(layer(0), pulled.data(), 1);
      REQUIRE(pull3.ok());
      REQUIRE(pull1.ok());
      for (auto* c : {c0.get(), c1.get()}) {
        const int slot = c == c0.get() ? 0 : 1;
        for (int i : {1, 0})
          REQUIRE(c->Wait(*c->Push(layer(i), g.data(), {slot, 0, 0.5f, 4, 0}), kDeadline).ok());
      }
      if (overlap) {
        // Layer 3 has no push yet: only layer 1's weights can come.
        REQUIRE(c0->Wait(*pull1, kDeadline).ok());
        const size_t w = layout[0].offset;
        CHECK(pulled[w] == Approx(f.model_->params()[w] - 0.5f * 2.0f));
        CHECK(pulled[layout[4].offset] == -7.0f);
        CHECK(c0->in_flight() > 0);  // layer 3's pull still waits
      }
      for (auto* c : {c0.get(), c1.get()}) {
        const int slot = c == c0.get() ? 0 : 1;
        REQUIRE(c->Wait(*c->Push(layer(2), g.data(), {slot, 0, 0.5f, 4, 0}), kDeadline).ok());
      }
      REQUIRE(c0->Wait(*pull3, kDeadline).ok());
      if (!overlap) REQUIRE(c0->Wait(*pull1, kDeadline).ok());
      for (int t : {0, 1, 4, 5}) {  // layers 1 and 3
        const size_t at = layout[t].offset;
        CHECK(pulled[at] == Approx(f.model_->params()[at] - 0.5f * 2.0f));
      }
      REQUIRE(c0->WaitBuffersReleased(kDeadline).ok());
      REQUIRE(c1->WaitBuffersReleased(kDeadline).ok());
    }
  }
}

TEST_CASE("A server keeping many pieces counts each step's samples once", "[paramserver][net]") {
  FixtureJob job;
  job.layers = "[";
  for (int i = 0; i < 11; ++i) {
    job.layers += "{type=\"dense\",units=4},";
    job.specs.insert(job.specs.begin(), LayerSpec{"dense", 4});
  }
  job.layers += "{type=\"dense\",units=3}]";
  ServerFixture f("bsp", job);
  auto c0 = f.Client(0, 100);
  auto c1 = f.Client(1, 101);
  const size_t n = f.model_->params().size();
  std::vector<float> g(n, 1.0f), pulled(n);
  REQUIRE(c0->Wait(*c0->Push(f.keys_->all(), g.data(), {0, 0, 0.5f, 4, 11}), kDeadline).ok());
  REQUIRE(c1->Wait(*c1->Push(f.keys_->all(), g.data(), {1, 0, 0.5f, 4, 22}), kDeadline).ok());
  REQUIRE(c0->Wait(*c0->Pull(f.keys_->all(), pulled.data(), 1), kDeadline).ok());
  // 24 tensors, each its own piece: every piece saw both slots once.
  capnp::MallocMessageBuilder m;
  auto q = m.initRoot<msg::Control>().initStatsRequest();
  q.setToken(3);
  q.setClockBegin(0);
  q.setClockEnd(1);
  f.SendControl(m);
  Message reply = f.Receive();
  REQUIRE(WithDecoded<msg::Control>(reply[1], [&](msg::Control::Reader c) {
            REQUIRE(c.which() == msg::Control::STATS_REPLY);
            CHECK(c.getStatsReply().getToken() == 3);
            CHECK(c.getStatsReply().getSamples() == 8);
            CHECK(c.getStatsReply().getSampleHash() == 33);
            CHECK(c.getStatsReply().getUpdatesApplied() == 1);
            return OkStatus();
          }).ok());
  REQUIRE(c0->WaitBuffersReleased(kDeadline).ok());
  REQUIRE(c1->WaitBuffersReleased(kDeadline).ok());
}

}  // namespace
}  // namespace pstrain
