// The control link: a node's heartbeats go out from a thread of its own,
// whatever its main thread is doing; the coordinator's other messages reach
// the main thread in order; a silent coordinator is noticed.
#include "common/net/control_link.h"

#include <capnp/message.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

// The coordinator's side: a ROUTER the link's DEALER talks to.
struct FakeCoordinator {
  ZmqContext& ctx;
  std::unique_ptr<Socket> router;
  std::string endpoint;
  std::string peer;  // the link's routing id, once it has sent something

  explicit FakeCoordinator(ZmqContext& c) : ctx(c) {
    router = *Socket::Create(ctx, SocketKind::kRouter, SocketOptions{});
    endpoint = *router->Bind("tcp://127.0.0.1:*");
  }

  // The next control message from the link (false: none within 30 s).
  bool Next(std::vector<uint8_t>* bytes) {
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until) {
      if (!*router->WaitReadable(std::chrono::milliseconds(100))) continue;
      Message in;
      if (!*router->Recv(&in, 4)) continue;
      REQUIRE(in.size() == 2);
      peer.assign(reinterpret_cast<const char*>(in[0].data()), in[0].size());
      bytes->assign(in[1].data(), in[1].data() + in[1].size());
      return true;
    }
    return false;
  }

  void Send(capnp::MessageBuilder& m) {
    REQUIRE(!peer.empty());
    Message out;
    out.push_back(Frame::Copy(peer));
    out.push_back(EncodeFrame(m));
    REQUIRE(router->Send(out).ok());
  }
};

struct Seen {
  msg::Control::Which which;
  uint32_t idle_ms = 0;
  int32_t value = 0;  // progress: samples; heartbeat: node id
};

Seen Decode(const std::vector<uint8_t>& bytes) {
  Seen s{};
  const Frame f = Frame::Copy(bytes.data(), bytes.size());
  REQUIRE(WithDecoded<msg::Control>(f, [&](msg::Control::Reader c) -> Status {
            s.which = c.which();
            if (c.isHeartbeat()) {
              s.idle_ms = c.getHeartbeat().getComputeIdleMs();
              s.value = c.getHeartbeat().getNodeId();
            } else if (c.isProgress()) {
              s.value = static_cast<int32_t>(c.getProgress().getSamples());
            }
            return OkStatus();
          }).ok());
  return s;
}

std::unique_ptr<ControlLink> StartLink(ZmqContext& ctx, const std::string& endpoint,
                                       std::chrono::milliseconds heartbeat,
                                       std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds grace = {}) {
  auto dealer = *Socket::Create(ctx, SocketKind::kDealer, SocketOptions{});
  REQUIRE(dealer->Connect(endpoint).ok());
  ControlLinkOptions o;
  o.node_id = 7;
  o.incarnation = 3;
  o.role = msg::Role::WORKER;
  o.heartbeat = heartbeat;
  o.timeout = timeout;
  o.coordinator = endpoint;
  o.grace = grace;
  auto link = ControlLink::Start(ctx, std::move(dealer), o);
  INFO(link.status().message());
  REQUIRE(link.ok());
  return *std::move(link);
}

// Ticks the link (up to 60 s) until it fails; its status.
Status TickUntilFailed(ControlLink& link) {
  Status s;
  const auto until = Clock::now() + std::chrono::seconds(60);
  while (s.ok() && Clock::now() < until) {
    (void)PollReadable({link.socket()}, std::chrono::milliseconds(20));
    s = link.Tick();
  }
  return s;
}

}  // namespace

TEST_CASE(
    "a node's heartbeats go on while its main thread never looks at the link, and say how "
    "long it has been busy",
    "[control_link]") {
  ZmqContext ctx;
  FakeCoordinator coordinator(ctx);
  auto link =
      StartLink(ctx, coordinator.endpoint, std::chrono::milliseconds(20), std::chrono::minutes(5));
  // This thread stands for a main thread in a long step: it does not touch
  // the link until the heartbeats say it has been busy for half a second.
  uint32_t first_idle = 0, idle = 0;
  int beats = 0;
  std::vector<uint8_t> bytes;
  while (idle < 500) {
    REQUIRE(coordinator.Next(&bytes));
    const Seen s = Decode(bytes);
    REQUIRE(s.which == msg::Control::HEARTBEAT);
    CHECK(s.value == 7);
    if (beats++ == 0) first_idle = s.idle_ms;
    CHECK(s.idle_ms >= idle);
    idle = s.idle_ms;
  }
  CHECK(beats >= 2);
  CHECK(idle > first_idle);

  // The coordinator's heartbeats stay with the link; the rest reach Drain
  // in order.
  for (int i = 0; i < 3; ++i) {
    capnp::MallocMessageBuilder hb;
    hb.initRoot<msg::Control>().initHeartbeat().setRole(msg::Role::COORDINATOR);
    coordinator.Send(hb);
    capnp::MallocMessageBuilder stats;
    stats.initRoot<msg::Control>().initStatsRequest();
    coordinator.Send(stats);
  }
  capnp::MallocMessageBuilder bye;
  bye.initRoot<msg::Control>().initShutdown().setExitCode(4);
  coordinator.Send(bye);
  std::vector<msg::Control::Which> got;
  const auto until = Clock::now() + std::chrono::seconds(30);
  while (got.size() < 4 && Clock::now() < until) {
    (void)PollReadable({link->socket()}, std::chrono::milliseconds(100));
    REQUIRE(link->Drain([&](msg::Control::Reader c) -> Status {
                  got.push_back(c.which());
                  return OkStatus();
                })
                .ok());
  }
  CHECK(got ==
        std::vector<msg::Control::Which>{msg::Control::STATS_REQUEST, msg::Control::STATS_REQUEST,
                                         msg::Control::STATS_REQUEST, msg::Control::SHUTDOWN});
  CHECK(link->Tick().ok());

  // What the main thread sends arrives in order, between heartbeats; and
  // having looked at the link, the main thread is no longer busy.
  for (int i = 1; i <= 5; ++i) {
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initProgress().setSamples(i);
    REQUIRE(link->Send(m).ok());
  }
  std::vector<int32_t> progress;
  bool rested = false;
  while (progress.size() < 5 || !rested) {
    REQUIRE(coordinator.Next(&bytes));
    const Seen s = Decode(bytes);
    if (s.which == msg::Control::PROGRESS) progress.push_back(s.value);
    if (s.which == msg::Control::HEARTBEAT && s.idle_ms < idle) rested = true;
  }
  CHECK(progress == std::vector<int32_t>{1, 2, 3, 4, 5});
}

TEST_CASE("a link whose coordinator falls silent says so, naming it", "[control_link]") {
  ZmqContext ctx;
  FakeCoordinator coordinator(ctx);
  auto link = StartLink(ctx, coordinator.endpoint, std::chrono::milliseconds(20),
                        std::chrono::milliseconds(300));
  const Status s = TickUntilFailed(*link);
  REQUIRE(!s.ok());
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK_THAT(std::string(s.message()),
             Catch::Contains("the coordinator at " + coordinator.endpoint) &&
                 Catch::Contains("has been silent for"));
}

// Drains the link for up to 30 s, until `want` arrives; false if it did not.
bool DrainUntil(ControlLink& link, msg::Control::Which want) {
  const auto until = Clock::now() + std::chrono::seconds(30);
  bool seen = false;
  while (!seen && Clock::now() < until) {
    (void)PollReadable({link.socket()}, std::chrono::milliseconds(20));
    REQUIRE(link.Tick().ok());
    REQUIRE(link.Drain([&](msg::Control::Reader c) -> Status {
                  seen = seen || c.which() == want;
                  return OkStatus();
                })
                .ok());
  }
  return seen;
}

void SendProgress(ControlLink& link, int samples) {
  capnp::MallocMessageBuilder m;
  m.initRoot<msg::Control>().initProgress().setSamples(samples);
  REQUIRE(link.Send(m).ok());
}

// The messages from the link until one of `kind` (false: none in 30 s).
bool NextOf(FakeCoordinator& c, msg::Control::Which kind, std::vector<Seen>* before = nullptr) {
  std::vector<uint8_t> bytes;
  while (c.Next(&bytes)) {
    const Seen s = Decode(bytes);
    if (s.which == kind) return true;
    if (before != nullptr) before->push_back(s);
  }
  return false;
}

TEST_CASE("with a grace period, a node outlives its coordinator and is taken back by the next",
          "[control_link]") {
  ZmqContext ctx;
  FakeCoordinator coordinator(ctx);
  auto link = StartLink(ctx, coordinator.endpoint, std::chrono::milliseconds(20),
                        std::chrono::milliseconds(300), std::chrono::minutes(5));
  std::vector<uint8_t> bytes;
  REQUIRE(coordinator.Next(&bytes));  // connected
  // The coordinator says nothing: past the timeout the node offers itself,
  // and what its main thread sends meanwhile is held, not sent.
  REQUIRE(NextOf(coordinator, msg::Control::REJOIN));
  CHECK(link->Tick().ok());
  SendProgress(*link, 1);
  std::vector<Seen> between;
  REQUIRE(NextOf(coordinator, msg::Control::REJOIN, &between));
  for (const Seen& s : between) CHECK(s.which != msg::Control::PROGRESS);

  SECTION("a restarted coordinator adopts it: what was held was meant for the one before") {
    capnp::MallocMessageBuilder adopted;
    adopted.initRoot<msg::Control>().initAdopted().setMembershipEpoch(9);
    coordinator.Send(adopted);
    REQUIRE(DrainUntil(*link, msg::Control::ADOPTED));
    SendProgress(*link, 2);
    std::vector<Seen> seen;
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until && std::none_of(seen.begin(), seen.end(), [](const Seen& s) {
             return s.which == msg::Control::PROGRESS;
           })) {
      REQUIRE(coordinator.Next(&bytes));
      seen.push_back(Decode(bytes));
    }
    std::vector<int32_t> progress;
    for (const Seen& s : seen) {
      if (s.which == msg::Control::PROGRESS) progress.push_back(s.value);
    }
    CHECK(progress == std::vector<int32_t>{2});
  }
  SECTION("its own coordinator is heard again (it was stopped): what was held goes out") {
    capnp::MallocMessageBuilder hb;
    hb.initRoot<msg::Control>().initHeartbeat().setRole(msg::Role::COORDINATOR);
    coordinator.Send(hb);
    std::vector<Seen> seen;
    REQUIRE(NextOf(coordinator, msg::Control::PROGRESS, &seen));
    CHECK(link->Tick().ok());
  }
}

TEST_CASE("a coordinator that does not know the node asks it to rejoin at once", "[control_link]") {
  ZmqContext ctx;
  FakeCoordinator coordinator(ctx);
  auto link = StartLink(ctx, coordinator.endpoint, std::chrono::milliseconds(20),
                        std::chrono::minutes(5), std::chrono::minutes(5));
  std::vector<uint8_t> bytes;
  REQUIRE(coordinator.Next(&bytes));
  capnp::MallocMessageBuilder ask;
  ask.initRoot<msg::Control>().setRejoinAsk();
  coordinator.Send(ask);
  REQUIRE(NextOf(coordinator, msg::Control::REJOIN));
}

TEST_CASE("a node whose coordinator does not come back within the grace period gives up",
          "[control_link]") {
  ZmqContext ctx;
  FakeCoordinator coordinator(ctx);
  auto link = StartLink(ctx, coordinator.endpoint, std::chrono::milliseconds(20),
                        std::chrono::milliseconds(200), std::chrono::milliseconds(1000));
  const Status s = TickUntilFailed(*link);
  REQUIRE(!s.ok());
  CHECK_THAT(std::string(s.message()), Catch::Contains("none came back within the grace period"));
}

TEST_CASE("a link dropped right after a send still delivers it", "[control_link]") {
  ZmqContext ctx;
  FakeCoordinator coordinator(ctx);
  std::vector<uint8_t> bytes;
  std::vector<std::string> peers;
  int progress = 0;
  for (int i = 0; i < 20; ++i) {
    auto link = StartLink(ctx, coordinator.endpoint, std::chrono::milliseconds(5),
                          std::chrono::seconds(30));
    // Connected once its first heartbeat is in (as a node's link is long
    // before it sends its last report).
    do {
      REQUIRE(coordinator.Next(&bytes));
      progress += Decode(bytes).which == msg::Control::PROGRESS ? 1 : 0;
    } while (std::find(peers.begin(), peers.end(), coordinator.peer) != peers.end());
    peers.push_back(coordinator.peer);
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initProgress().setSamples(i);
    REQUIRE(link->Send(m).ok());
  }
  while (progress < 20) {
    REQUIRE(coordinator.Next(&bytes));
    progress += Decode(bytes).which == msg::Control::PROGRESS ? 1 : 0;
  }
}

}  // namespace pstrain
