// What the coordinator accepts from whom on its control socket.
#include "coordinator/control_rules.h"

#include <catch2/catch.hpp>

namespace pstrain {
namespace {

using C = msg::Control;

TEST_CASE("Each role may send only the reports of its own work", "[control]") {
  for (C::Which k : {C::HEARTBEAT, C::READY, C::MEMBERSHIP_ACK, C::ERROR}) {
    CHECK(RoleMaySend(msg::Role::WORKER, k));
    CHECK(RoleMaySend(msg::Role::SERVER, k));
  }
  for (C::Which k : {C::PROGRESS, C::EPOCH_DONE, C::EVAL_DONE}) {
    CHECK(RoleMaySend(msg::Role::WORKER, k));
    CHECK_FALSE(RoleMaySend(msg::Role::SERVER, k));
  }
  for (C::Which k : {C::STATS_REPLY, C::CHECKPOINT_DONE}) {
    CHECK(RoleMaySend(msg::Role::SERVER, k));
    CHECK_FALSE(RoleMaySend(msg::Role::WORKER, k));
  }
  // The coordinator's own messages, from anyone, and Register once
  // registered.
  for (C::Which k : {C::REGISTER, C::ASSIGNMENT, C::START_EPOCH, C::EVALUATE, C::STATS_REQUEST,
                     C::SHUTDOWN, C::MEMBERSHIP, C::CHECKPOINT_REQUEST, C::ROUTING}) {
    for (msg::Role r : {msg::Role::WORKER, msg::Role::SERVER, msg::Role::COORDINATOR}) {
      CHECK_FALSE(RoleMaySend(r, k));
    }
  }
  CHECK_FALSE(RoleMaySend(msg::Role::COORDINATOR, C::EPOCH_DONE));
}

TEST_CASE("Message kinds are named as the schema names them", "[control]") {
  CHECK(ControlKindName(C::EPOCH_DONE) == "epochDone");
  CHECK(ControlKindName(C::STATS_REPLY) == "statsReply");
  CHECK(ControlKindName(C::ROUTING) == "routing");
}

TEST_CASE("Peers are named by their routing id, binary ones in hex", "[control]") {
  CHECK(PeerName("worker-a") == "worker-a");
  CHECK(PeerName(std::string("\0\x8b\x45\x67\x01", 5)) == "0x008b456701");
  CHECK(PeerName("") == "0x");
}

TEST_CASE("Refusal log lines are rate-limited and say how many were held back", "[control]") {
  LogLimiter limit(2, std::chrono::seconds(1));
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  int64_t held = -1;
  CHECK(limit.Allow(t0, &held));
  CHECK(held == 0);
  CHECK(limit.Allow(t0, &held));
  CHECK_FALSE(limit.Allow(t0 + std::chrono::milliseconds(10), &held));
  CHECK_FALSE(limit.Allow(t0 + std::chrono::milliseconds(20), &held));
  CHECK(limit.Allow(t0 + std::chrono::milliseconds(1001), &held));
  CHECK(held == 2);
  CHECK_FALSE(limit.Allow(t0 + std::chrono::milliseconds(1002), &held));
}

}  // namespace
}  // namespace pstrain
