#include "common/msg/codec.h"

#include <capnp/message.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "common/base/rng.h"
#include "common/net/node.h"
#include "tests/test_util.h"

namespace pstrain {
namespace {

Frame PushHeader() {
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<msg::DataHeader>();
  h.setOp(msg::DataOp::PUSH);
  h.setRequestId(42);
  h.setWorkerId(3);
  h.setClock(17);
  h.initKeyRange().setBegin(5);
  h.getKeyRange().setEnd(9);
  h.setError("text");
  return EncodeFrame(m);
}

TEST_CASE("Headers round-trip through a frame", "[codec]") {
  Frame f = PushHeader();
  int64_t clock = 0;
  Status s = WithDecoded<msg::DataHeader>(f, [&](msg::DataHeader::Reader h) {
    clock = h.getClock();
    CHECK(h.getOp() == msg::DataOp::PUSH);
    CHECK(h.getKeyRange().getEnd() == 9);
    CHECK(std::string(h.getError().cStr()) == "text");
    return OkStatus();
  });
  CHECK(s.ok());
  CHECK(clock == 17);
}

TEST_CASE("Malformed headers are refused with a message, never a crash", "[codec]") {
  auto decode = [](const Frame& f) {
    return WithDecoded<msg::DataHeader>(f, [](msg::DataHeader::Reader h) {
      (void)h.getError();
      (void)h.getRows().size();
      return OkStatus();
    });
  };
  SECTION("empty") {
    CHECK_THAT(decode(Frame::Copy("", 0)).message(), Catch::Contains("8-byte words"));
  }
  SECTION("odd size") { CHECK_FALSE(decode(Frame::Copy("abcdefghi", 9)).ok()); }
  SECTION("too big") {
    std::vector<char> big(kMaxHeaderBytes + 8, 0);
    CHECK_THAT(decode(Frame::Copy(big.data(), big.size())).message(), Catch::Contains("limit"));
  }
  SECTION("truncated") {
    Frame f = PushHeader();
    Frame cut = Frame::Copy(f.data(), f.size() - 8);
    Status s = decode(cut);
    CHECK_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kInvalidArgument);
  }
  SECTION("random bytes") {
    Rng rng(1);
    int refused = 0;
    for (int i = 0; i < 3000; ++i) {
      std::vector<uint8_t> bytes(8 * (1 + rng.Below(40)));
      for (auto& b : bytes) b = static_cast<uint8_t>(rng.Below(256));
      // Plausible segment tables half of the time, so the parser goes deeper.
      if (i % 2 == 0) {
        bytes[0] = bytes[1] = bytes[2] = bytes[3] = 0;
        const uint32_t words = static_cast<uint32_t>(bytes.size() / 8 - 1);
        std::memcpy(bytes.data() + 4, &words, 4);
      }
      if (!decode(Frame::Copy(bytes.data(), bytes.size())).ok()) ++refused;
    }
    CHECK(refused > 0);
  }
}

TEST_CASE("An assignment with many overrides and servers decodes within its traversal limit",
          "[codec]") {
  testing::TempDir dir;
  for (const char* f : {"a", "b", "c", "d"}) testing::WriteFile(dir.File(f), "x");
  NodeAssignment a;
  a.node_id = 2;
  a.job_text =
      "[data]\ntrain_images=\"a\"\ntrain_labels=\"b\"\ntest_images=\"c\"\ntest_labels=\"d\"\n"
      "[model]\nlayers=[{type=\"dense\",units=3}]\n";
  a.job_name = "job.toml";
  a.job_base_dir = dir.path().string();
  for (int i = 0; i < 60; ++i) a.overrides.push_back({"job.seed", std::to_string(i)});
  for (int i = 0; i < 64; ++i)
    a.servers.push_back({i, "tcp://127.0.0.1:1", {{0, 1}}, 1, {}, {}, {}});
  for (int i = 0; i < 64; ++i) {
    a.workers.push_back(i);
    a.worker_incarnations.push_back(7);
  }
  capnp::MallocMessageBuilder m;
  BuildAssignment(a, m.initRoot<msg::Control>().initAssignment());
  Status s = WithDecoded<msg::Control>(EncodeFrame(m), [&](msg::Control::Reader c) {
    ASSIGN_OR_RETURN(NodeAssignment back, ReadAssignment(c.getAssignment()));
    CHECK(back.config.seed == 59);
    CHECK(back.servers.size() == 64);
    return OkStatus();
  });
  INFO(s.message());
  CHECK(s.ok());
}

}  // namespace
}  // namespace pstrain
