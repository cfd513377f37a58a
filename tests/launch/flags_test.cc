#include "launch/flags.h"

#include <catch2/catch.hpp>

namespace pstrain {
namespace {

StatusOr<CommandLine> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "pstrain");
  return ParseCommandLine(static_cast<int>(args.size()), args.data());
}

TEST_CASE("Flags become job-key overrides or launcher options", "[launch]") {
  auto cl = Parse({"train", "job.toml", "--standalone", "--epochs", "3", "--lr=0.1", "--set",
                   "optimizer.type=adam", "--metrics", "m.jsonl"});
  REQUIRE(cl.ok());
  CHECK(cl->command == "train");
  CHECK(cl->positional == std::vector<std::string>{"job.toml"});
  CHECK(cl->options.at("standalone") == "true");
  REQUIRE(cl->overrides.size() == 4);
  CHECK(cl->overrides[0].key == "train.epochs");
  CHECK(cl->overrides[0].value == "3");
  CHECK(cl->overrides[1].key == "optimizer.lr");
  CHECK(cl->overrides[1].value == "0.1");
  CHECK(cl->overrides[2].key == "optimizer.type");
  CHECK(cl->overrides[2].value == "adam");
  CHECK(cl->overrides[3].key == "output.metrics");
}

TEST_CASE("-o is --output", "[launch]") {
  auto cl = Parse({"export", "ckpt", "-o", "m.onnx", "--format", "onnx"});
  REQUIRE(cl.ok());
  CHECK(cl->positional == std::vector<std::string>{"ckpt"});
  CHECK(cl->options.at("output") == "m.onnx");
  CHECK(cl->options.at("format") == "onnx");
  CHECK(Parse({"export", "ckpt", "-o"}).status().message().find("-o needs a value") !=
        std::string::npos);
}

TEST_CASE("Bad flags are named", "[launch]") {
  CHECK(Parse({"train", "--epoch", "3"}).status().message() ==
        "unknown flag --epoch (see pstrain --help)");
  CHECK(Parse({"train", "--epochs"}).status().message() == "flag --epochs needs a value");
  CHECK(Parse({"train", "--standalone=1"}).status().message() ==
        "flag --standalone takes no value");
  CHECK_THAT(Parse({"train", "--set", "novalue"}).status().message(),
             Catch::Contains("--set wants KEY=VALUE"));
}

TEST_CASE("Usage lists every flag with the key it sets", "[launch]") {
  const std::string u = UsageText();
  CHECK_THAT(u, Catch::Contains("--batch-size"));
  CHECK_THAT(u, Catch::Contains("[train.batch_size]"));
}

}  // namespace
}  // namespace pstrain
