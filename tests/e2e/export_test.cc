// pstrain export: each example model's ONNX file, checked by tools pstrain
// did not write: the ONNX library's checker, and OpenCV's DNN module running
// it on the test set (tests/e2e/onnx_check.py) against pstrain eval's logits.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "common/data/dataset.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/process.h"
#include "tests/test_util.h"

namespace pstrain::testing {
namespace {

using json = nlohmann::json;

const std::string kFashion = "/usr/share/datasets/fashion-mnist/";
const std::string kCheck = kSourceDir + "/tests/e2e/onnx_check.py";
const std::string kPython = "/usr/bin/python3";

TEST_CASE(
    "An example model exported as ONNX passes the ONNX checker, and OpenCV's DNN module "
    "computes pstrain's logits and accuracy",
    "[e2e][export]") {
  const std::string example = GENERATE(std::string("fashion_mlp"), std::string("fashion_cnn"),
                                       std::string("fashion_resnet"));
  INFO(example);
  TempDir dir;
  // One epoch on the first 2,000 training images: trained weights, quickly.
  const RunResult subset =
      Run({kPython, kCheck, "subset", kFashion + "train-images-idx3-ubyte.gz",
           kFashion + "train-labels-idx1-ubyte.gz", "2000", dir.File("x.gz"), dir.File("y.gz")});
  INFO(subset.err);
  REQUIRE(subset.code == 0);
  const RunResult train =
      Run({kPstrain, "train", kSourceDir + "/examples/" + example + ".toml", "--servers", "1",
           "--workers", "1", "--epochs", "1", "--progress", "never", "--checkpoint-dir",
           dir.File("ckpt"), "--set", "data.train_images=" + dir.File("x.gz"), "--set",
           "data.train_labels=" + dir.File("y.gz")});
  INFO(train.err);
  REQUIRE(train.code == 0);
  const RunResult a =
      Run({kPstrain, "export", dir.File("ckpt"), "--format", "onnx", "-o", dir.File("a.onnx")});
  INFO(a.err);
  REQUIRE(a.code == 0);
  CHECK(a.out.find("opset 13") != std::string::npos);
  // The same checkpoint, the same bytes.
  const RunResult b = Run({kPstrain, "export", dir.File("ckpt"), "-o", dir.File("b.onnx")});
  REQUIRE(b.code == 0);
  CHECK(ReadFile(dir.File("a.onnx")) == ReadFile(dir.File("b.onnx")));
  const RunResult eval = Run({kPstrain, "eval", dir.File("ckpt"), "--logits", dir.File("logits")});
  INFO(eval.err);
  REQUIRE(eval.code == 0);
  std::smatch right;
  REQUIRE(std::regex_search(eval.out, right, std::regex(R"(\((\d+) of 10000 right\))")));
  const RunResult check =
      Run({kPython, kCheck, "check", dir.File("a.onnx"), kFashion + "t10k-images-idx3-ubyte.gz",
           kFashion + "t10k-labels-idx1-ubyte.gz", dir.File("logits")});
  INFO(check.err);
  REQUIRE(check.code == 0);
  const json r = json::parse(check.out);
  INFO(r.dump());
  CHECK(r["checker"] == "ok");
  CHECK(r["samples"] == 10000);
  CHECK(r["max_abs_diff"].get<double>() <= 1e-4);
  CHECK(r["pstrain_correct"] == std::stoi(right[1].str()));
  CHECK(r["opencv_correct"] == r["pstrain_correct"]);
  CHECK(r["probabilities_max_diff"].get<double>() < 1e-5);
}

TEST_CASE(
    "pstrain predict writes a line for every test sample, and their accuracy is pstrain eval's",
    "[e2e][export]") {
  TempDir dir;
  const RunResult train =
      Run({kPstrain, "train", kFashionJob, "--servers", "1", "--workers", "1", "--epochs", "1",
           "--progress", "never", "--checkpoint-dir", dir.File("ckpt")});
  INFO(train.err);
  REQUIRE(train.code == 0);
  const RunResult eval = Run({kPstrain, "eval", dir.File("ckpt")});
  REQUIRE(eval.code == 0);
  std::smatch right;
  REQUIRE(std::regex_search(eval.out, right, std::regex(R"(\((\d+) of 10000 right\))")));
  const std::string images = kFashion + "t10k-images-idx3-ubyte.gz";
  const RunResult p =
      Run({kPstrain, "predict", dir.File("ckpt"), "--input", images, "-o", dir.File("p.jsonl")});
  INFO(p.err);
  REQUIRE(p.code == 0);
  CHECK(p.out.find("predicted 10000 samples") != std::string::npos);
  CHECK(p.out.find("samples/s") != std::string::npos);
  const StatusOr<Dataset> test = ReadIdxDataset(images, kFashion + "t10k-labels-idx1-ubyte.gz");
  REQUIRE(test.ok());
  const std::vector<json> lines = ReadJsonLines(dir.File("p.jsonl"));
  REQUIRE(lines.size() == 10000);
  int correct = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    REQUIRE(lines[i]["index"] == i);
    REQUIRE(lines[i]["probabilities"].size() == 10);
    double sum = 0;
    for (const json& q : lines[i]["probabilities"]) sum += q.get<double>();
    CHECK(std::abs(sum - 1) < 1e-4);
    correct += lines[i]["class"] == test->labels[i];
  }
  CHECK(correct == std::stoi(right[1].str()));
  // CSV rows, when the output says so.
  const RunResult csv =
      Run({kPstrain, "predict", dir.File("ckpt"), "--input", images, "-o", dir.File("p.csv")});
  REQUIRE(csv.code == 0);
  const std::string text = ReadFile(dir.File("p.csv"));
  CHECK(text.rfind("index,class,p0,", 0) == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 10001);
  // A truncated input: a message naming the file and the sample, no output.
  WriteFile(dir.File("short"), ReadFile(dir.File("p.csv")).substr(0, 3));
  const RunResult bad = Run({kPstrain, "predict", dir.File("ckpt"), "--input", dir.File("short"),
                             "-o", dir.File("q.jsonl")});
  CHECK(bad.code == 1);
  CHECK(bad.err.find(dir.File("short")) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.File("q.jsonl")));
  CHECK_FALSE(std::filesystem::exists(dir.File("q.jsonl.tmp")));
}

TEST_CASE(
    "Fine-tuning with --init-from starts from another job's weights and continues its loss "
    "curve, and a model that does not match is refused with every name and shape",
    "[e2e][export]") {
  TempDir dir;
  const std::vector<std::string> flags = {"--servers", "1", "--workers",  "1",
                                          "--epochs",  "1", "--progress", "never"};
  std::vector<std::string> first = {kPstrain,        "train",       kFashionJob,
                                    "--metrics",     dir.File("a"), "--checkpoint-dir",
                                    dir.File("ckpt")};
  first.insert(first.end(), flags.begin(), flags.end());
  const RunResult a = Run(first);
  INFO(a.err);
  REQUIRE(a.code == 0);
  std::vector<std::string> tune = {kPstrain,      "train",       kFashionJob,     "--metrics",
                                   dir.File("b"), "--init-from", dir.File("ckpt")};
  tune.insert(tune.end(), flags.begin(), flags.end());
  const RunResult b = Run(tune);
  INFO(b.err);
  REQUIRE(b.code == 0);
  CHECK(b.err.find("weights from " + dir.File("ckpt") + "/ckpt-000001: dense1.weight") !=
        std::string::npos);
  const double before = Events(ReadJsonLines(dir.File("a")), "epoch").at(0)["train_loss"];
  const double after = Events(ReadJsonLines(dir.File("b")), "epoch").at(0)["train_loss"];
  CHECK(after < before);
  // Another model: refused, naming both sides; with --init-from-partial the
  // tensors that match are taken and the others listed.
  const RunResult cnn =
      Run({kPstrain, "train", kSourceDir + "/examples/fashion_cnn.toml", "--standalone", "--epochs",
           "1", "--progress", "never", "--init-from", dir.File("ckpt")});
  CHECK(cnn.code == 2);
  CHECK(cnn.err.find("conv1.weight {3,3,1,32}") != std::string::npos);
  CHECK(cnn.err.find("dense1.weight {784,256}") != std::string::npos);
  const RunResult partial =
      Run({kPstrain, "train", kFashionJob, "--standalone", "--epochs", "1", "--progress", "never",
           "--set",
           "model.layers=[{type=\"dense\",units=256},{type=\"relu\"},"
           "{type=\"dense\",units=64},{type=\"relu\"},{type=\"dense\",units=10}]",
           "--init-from", dir.File("ckpt"), "--init-from-partial"});
  INFO(partial.err);
  CHECK(partial.code == 0);
  CHECK(partial.err.find("from the seed: dense2.weight {256,64}") != std::string::npos);
  const RunResult missing =
      Run({kPstrain, "train", kFashionJob, "--standalone", "--init-from", dir.File("nothing")});
  CHECK(missing.code == 2);
  CHECK(missing.err.find(dir.File("nothing") + ": no such checkpoint folder") != std::string::npos);
}

TEST_CASE("pstrain export refuses a bad command line with a message naming the problem",
          "[e2e][export]") {
  TempDir dir;
  RunResult r = Run({kPstrain, "export", dir.File("none"), "--format", "tflite", "-o", "m"});
  CHECK(r.code == 2);
  CHECK(r.err.find("--format tflite") != std::string::npos);
  r = Run({kPstrain, "export", dir.File("none")});
  CHECK(r.code == 2);
  CHECK(r.err.find("needs -o FILE") != std::string::npos);
  r = Run({kPstrain, "export", dir.File("none"), "-o", dir.File("m.onnx")});
  CHECK(r.code == 1);
  CHECK(r.err.find(dir.File("none")) != std::string::npos);
}

}  // namespace
}  // namespace pstrain::testing
