// Jobs across emulated hosts: each rank of mpirun in its own network
// namespace with its own address, over rate-limited links.
#include <catch2/catch.hpp>
#include <set>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/emulated_hosts.h"
#include "tests/e2e/netns.h"
#include "tests/e2e/process.h"

namespace pstrain::testing {
namespace {

using nlohmann::json;

TEST_CASE("mpirun runs a keyed job across 3 emulated hosts on 1 Gbit/s links", "[e2e][emulated]") {
  if (const std::string why = NetnsRefusal(); !why.empty()) PSTRAIN_SKIP(why);
  EmulatedHosts hosts(3, "1gbit");
  INFO(hosts.error());
  REQUIRE(hosts.ok());
  TempDir dir;
  const std::string key = dir.File("job.key");
  REQUIRE(Run({kPstrain, "keygen", key}).code == 0);
  const std::string hostfile = dir.File("hosts");
  WriteFile(hostfile, hosts.Host(1) + " slots=2\n" + hosts.Host(2) + " slots=2\n" + hosts.Host(3) +
                          " slots=2\n");
  const std::vector<std::string> job = {kMnistJob, "--servers",  "2",    "--epochs",
                                        "2",       "--progress", "never"};
  std::vector<std::string> args = {"--hostfile",      hostfile, "-np",  "5",
                                   "--oversubscribe", kPstrain, "train"};
  args.insert(args.end(), job.begin(), job.end());
  const std::string metrics = dir.File("m");
  args.insert(args.end(), {"--bind", "eth0", "--key", key, "--metrics", metrics});
  RunResult r = Run(hosts.Mpirun(args));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("on 3 host(s)"));

  // Every node listened on its own host's address.
  const json m = Events(ReadJsonLines(metrics), "membership").at(0);
  CHECK_THAT(m["coordinator"].get<std::string>(), Catch::StartsWith("tcp://10.203.0.1:"));
  std::set<std::string> server_hosts;
  for (const json& s : m["servers"]) {
    const std::string e = s["endpoint"];
    CHECK_THAT(e, Catch::StartsWith("tcp://10.203.0."));
    server_hosts.insert(e.substr(0, e.rfind(':')));
  }
  CHECK(server_hosts.size() == 2);

  // The same job on one machine: BSP gives the same weights.
  std::vector<std::string> local = {kPstrain, "train",     "--workers",
                                    "2",      "--metrics", dir.File("local")};
  local.insert(local.begin() + 2, job.begin(), job.end());
  REQUIRE(Run(local).code == 0);
  const json a = Events(ReadJsonLines(metrics), "final").at(0);
  const json b = Events(ReadJsonLines(dir.File("local")), "final").at(0);
  CHECK(a["test_accuracy"].get<double>() > 0.9);
  CHECK(Digest(a) == Digest(b));
}

}  // namespace
}  // namespace pstrain::testing
