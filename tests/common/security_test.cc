// Job keys and CurveZMQ on pstrain's sockets: key files, the handshake
// refusing every client without the job's key, and the bind policy.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <thread>

#include "common/net/zmq_socket.h"
#include "launch/roles.h"
#include "tests/net_probe.h"
#include "tests/test_util.h"

namespace pstrain {
namespace {

using testing::ProbeHandshake;
using testing::ProbeIdentity;
using testing::ProbeResult;

CurveKeyPair NewKey() {
  StatusOr<CurveKeyPair> k = GenerateCurveKeyPair();
  REQUIRE(k.ok());
  return *k;
}

// The four ways to knock on a keyed port, and who must get in.
struct Attempt {
  const char* what;
  ProbeIdentity id;
  bool admit;
};
std::vector<Attempt> Attempts(const CurveKeyPair& job) {
  const CurveKeyPair other = NewKey(), own = NewKey();
  return {
      {"CURVE disabled (no key)", {}, false},
      {"another job's key", {true, other.public_key, other.public_key, other.secret_key}, false},
      {"the job's public key but its own key pair",
       {true, job.public_key, own.public_key, own.secret_key},
       false},
      {"the job's key", {true, job.public_key, job.public_key, job.secret_key}, true},
  };
}

TEST_CASE("a job key file round-trips, is private, and is never overwritten", "[security]") {
  testing::TempDir dir;
  const std::string path = dir.File("job.key");
  const CurveKeyPair key = NewKey();
  REQUIRE(WriteJobKeyFile(path, key).ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  StatusOr<CurveKeyPair> back = ReadJobKeyFile(path);
  REQUIRE(back.ok());
  CHECK(back->public_key == key.public_key);
  CHECK(back->secret_key == key.secret_key);
  Status again = WriteJobKeyFile(path, NewKey());
  CHECK_FALSE(again.ok());
  CHECK_THAT(again.message(), Catch::Contains("already exists"));
  CHECK(ReadJobKeyFile(path)->secret_key == key.secret_key);
}

TEST_CASE("a bad job key file is refused with a message that names the problem", "[security]") {
  testing::TempDir dir;
  const CurveKeyPair key = NewKey(), other = NewKey();
  auto write = [&](const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string p = dir.File(name);
    testing::WriteFile(p, text);
    ::chmod(p.c_str(), mode);
    return p;
  };
  const std::string good =
      "public = \"" + key.public_key + "\"\nsecret = \"" + key.secret_key + "\"\n";
  auto message = [](const std::string& path) {
    StatusOr<CurveKeyPair> k = ReadJobKeyFile(path);
    REQUIRE_FALSE(k.ok());
    return k.status().message();
  };
  CHECK_THAT(message(write("open", good, 0644)), Catch::Contains("chmod 600"));
  CHECK_THAT(message(dir.File("missing")), Catch::Contains("pstrain keygen"));
  CHECK_THAT(message(write("half", "public = \"" + key.public_key + "\"\n")),
             Catch::Contains("both a public and a secret"));
  CHECK_THAT(message(write("mixed", "public = \"" + other.public_key + "\"\nsecret = \"" +
                                        key.secret_key + "\"\n")),
             Catch::Contains("does not belong"));
  CHECK_THAT(message(write("short", "public = \"abc\"\n")), Catch::Contains("short:1:"));
  CHECK_THAT(message(write("z85", "# c\n\nsecret = \"" + std::string(40, '~') + "\"\n")),
             Catch::Contains("z85:3: the secret key is not valid Z85"));
}

TEST_CASE("keyed sockets talk, and every client without the job's key is refused at the handshake",
          "[security]") {
  const CurveKeyPair job = NewKey();
  ZmqContext server_ctx;
  REQUIRE(server_ctx.EnableCurve(job).ok());
  auto router = *Socket::Create(server_ctx, SocketKind::kRouter, SocketOptions{});
  const std::string endpoint = *router->Bind("tcp://127.0.0.1:*");

  ZmqContext client_ctx;
  REQUIRE(client_ctx.EnableCurve(job).ok());
  SocketOptions o;
  o.identity = "w0";
  auto dealer = *Socket::Create(client_ctx, SocketKind::kDealer, o);
  REQUIRE(dealer->Connect(endpoint).ok());
  Message out;
  out.push_back(Frame::Copy(std::string("hello")));
  REQUIRE(dealer->Send(out).ok());
  REQUIRE(*router->WaitReadable(std::chrono::seconds(30)));
  Message in;
  REQUIRE(*router->Recv(&in, 4));
  REQUIRE(in.size() == 2);
  CHECK(std::string(reinterpret_cast<const char*>(in[1].data()), in[1].size()) == "hello");

  int refused = 0;
  for (const Attempt& a : Attempts(job)) {
    INFO(a.what);
    const ProbeResult r = ProbeHandshake(endpoint, a.id);
    CHECK(ToString(r) ==
          std::string(ToString(a.admit ? ProbeResult::kAdmitted : ProbeResult::kRefused)));
    refused += a.admit ? 0 : 1;
  }
  // The listener counted (and logged) each refusal.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server_ctx.handshakes_refused() < refused && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(server_ctx.handshakes_refused() >= refused);
}

TEST_CASE("without the ZAP handler a stolen public key gets in: the probes can tell",
          "[security]") {
  const CurveKeyPair job = NewKey();
  ZmqContext ctx;
  CurveOptions no_zap;
  no_zap.zap = false;
  REQUIRE(ctx.EnableCurve(job, no_zap).ok());
  auto router = *Socket::Create(ctx, SocketKind::kRouter, SocketOptions{});
  const std::string endpoint = *router->Bind("tcp://127.0.0.1:*");
  const std::vector<Attempt> attempts = Attempts(job);
  CHECK(ProbeHandshake(endpoint, attempts[2].id) == ProbeResult::kAdmitted);
}

TEST_CASE("without a job key pstrain listens on loopback only, unless told --insecure",
          "[security]") {
  CHECK(JobSecurity("", false, "127.0.0.1").ok());
  StatusOr<std::optional<CurveKeyPair>> open = JobSecurity("", false, "192.0.2.2");
  REQUIRE_FALSE(open.ok());
  CHECK_THAT(open.status().message(), Catch::Contains("cluster.bind 192.0.2.2") &&
                                          Catch::Contains("--key") &&
                                          Catch::Contains("--insecure"));
  StatusOr<std::optional<CurveKeyPair>> insecure = JobSecurity("", true, "192.0.2.2");
  REQUIRE(insecure.ok());
  CHECK_FALSE(insecure->has_value());
}

}  // namespace
}  // namespace pstrain
