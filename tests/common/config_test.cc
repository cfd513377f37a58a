#include "common/job/config.h"

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/test_util.h"

namespace pstrain {
namespace {

using testing::TempDir;

// A valid job whose data files exist (their contents are not read here).
struct JobFixture {
  TempDir dir;
  JobFixture() {
    for (const char* f : {"tr-img", "tr-lbl", "te-img", "te-lbl", "train.csv", "test.csv"}) {
      testing::WriteFile(dir.File(f), "x");
    }
  }
  std::string Job(const std::string& extra = "") const {
    return "[data]\n"
           "train_images = \"tr-img\"\ntrain_labels = \"tr-lbl\"\n"
           "test_images = \"te-img\"\ntest_labels = \"te-lbl\"\n"
           "[model]\n"
           "layers = [{type = \"dense\", units = 16}, {type = \"relu\"}, "
           "{type = \"dense\", units = 10}]\n" +
           extra;
  }
  StatusOr<JobConfig> Parse(const std::string& text, std::vector<ConfigOverride> o = {}) const {
    return ParseJobConfig(text, "job.toml", dir.path().string(), o);
  }
};

TEST_CASE("A minimal job file gets every default and resolves data paths", "[config]") {
  JobFixture f;
  auto c = f.Parse(f.Job());
  REQUIRE(c.ok());
  CHECK(c->name == "job");
  CHECK(c->seed == 1);
  CHECK(c->epochs == 10);
  CHECK(c->batch_size == 64);
  CHECK(c->threads == 1);
  CHECK(c->optimizer.kind == OptimizerKind::kMomentum);
  CHECK(c->optimizer.lr == Approx(0.05));
  CHECK(c->schedule.kind == ScheduleKind::kConstant);
  CHECK(c->data.train_images == f.dir.File("tr-img"));
  CHECK(c->layers.size() == 3);
  CHECK(c->layers[2].units == 10);
  CHECK(c->metrics_path.empty());
}

TEST_CASE("Every key is read from the file", "[config]") {
  JobFixture f;
  auto c = f.Parse(
      f.Job("[job]\nname = \"n\"\nseed = 7\n"
            "[optimizer]\ntype = \"adam\"\nlr = 0.001\nbeta1 = 0.8\nbeta2 = 0.99\neps = 1e-6\n"
            "weight_decay = 0.0001\n"
            "[schedule]\ntype = \"step\"\nstep_epochs = 3\ngamma = 0.5\nwarmup_epochs = 1\n"
            "[train]\nepochs = 3\nbatch_size = 32\nthreads = 2\neval_batch_size = 500\n"
            "[output]\nmetrics = \"m.jsonl\"\nprogress = \"never\"\n"));
  REQUIRE(c.ok());
  CHECK(c->name == "n");
  CHECK(c->seed == 7);
  CHECK(c->optimizer.kind == OptimizerKind::kAdam);
  CHECK(c->optimizer.beta1 == Approx(0.8));
  CHECK(c->optimizer.eps == Approx(1e-6));
  CHECK(c->schedule.kind == ScheduleKind::kStep);
  CHECK(c->schedule.gamma == Approx(0.5));
  CHECK(c->epochs == 3);
  CHECK(c->batch_size == 32);
  CHECK(c->threads == 2);
  CHECK(c->eval_batch_size == 500);
  CHECK(c->metrics_path == "m.jsonl");
  CHECK(c->progress == "never");
}

TEST_CASE("Every choice of an enum key sets the value it names", "[config]") {
  // The table converts a choice by its place in the key's list, so the lists
  // must keep the enums' order.
  JobFixture f;
  auto with = [&](const std::string& key, std::string_view value) {
    auto c = f.Parse(f.Job(), {{key, std::string(value)}});
    REQUIRE(c.ok());
    return *c;
  };
  for (Consistency k : {Consistency::kBsp, Consistency::kAsp, Consistency::kSsp}) {
    CHECK(with("cluster.consistency", ConsistencyName(k)).cluster.consistency == k);
  }
  for (HandoutKind k : {HandoutKind::kGlobal, HandoutKind::kStatic}) {
    CHECK(with("data.handout", HandoutKindName(k)).data.handout == k);
  }
  CHECK(with("optimizer.type", "sgd").optimizer.kind == OptimizerKind::kSgd);
  CHECK(with("optimizer.type", "momentum").optimizer.kind == OptimizerKind::kMomentum);
  CHECK(with("optimizer.type", "adam").optimizer.kind == OptimizerKind::kAdam);
  CHECK(with("optimizer.type", "adagrad").optimizer.kind == OptimizerKind::kAdagrad);
  CHECK(with("schedule.type", "constant").schedule.kind == ScheduleKind::kConstant);
  CHECK(with("schedule.type", "step").schedule.kind == ScheduleKind::kStep);
  CHECK(with("schedule.type", "cosine").schedule.kind == ScheduleKind::kCosine);
}

TEST_CASE("Command-line overrides win over the file and are validated alike", "[config]") {
  JobFixture f;
  auto c = f.Parse(f.Job("[train]\nepochs = 3\n"), {{"train.epochs", "5"},
                                                    {"optimizer.lr", "0.2"},
                                                    {"optimizer.type", "sgd"},
                                                    {"optimizer.nesterov", "true"}});
  REQUIRE(c.ok());
  CHECK(c->epochs == 5);
  CHECK(c->optimizer.lr == Approx(0.2));
  CHECK(c->optimizer.kind == OptimizerKind::kSgd);
  CHECK(c->optimizer.nesterov);

  auto bad = f.Parse(f.Job(), {{"train.epochs", "ten"}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == "command line: train.epochs must be an integer, got \"ten\"");
  auto unknown = f.Parse(f.Job(), {{"train.epoch", "3"}});
  REQUIRE_FALSE(unknown.ok());
  CHECK_THAT(unknown.status().message(), Catch::Contains("unknown key train.epoch"));
  CHECK_THAT(unknown.status().message(), Catch::Contains("epochs"));
}

TEST_CASE("model.init_from names a checkpoint folder that exists", "[config]") {
  JobFixture f;
  std::filesystem::create_directories(f.dir.File("ckpt"));
  auto c = f.Parse(f.Job(),
                   {{"model.init_from", f.dir.File("ckpt")}, {"model.init_from_partial", "true"}});
  REQUIRE(c.ok());
  CHECK(c->init_from == f.dir.File("ckpt"));
  CHECK(c->init_from_partial);
  auto missing = f.Parse(f.Job(), {{"model.init_from", f.dir.File("none")}});
  CHECK(missing.status().message() ==
        "command line: model.init_from: " + f.dir.File("none") + ": no such checkpoint folder");
  auto alone = f.Parse(f.Job(), {{"model.init_from_partial", "true"}});
  CHECK_THAT(alone.status().message(), Catch::Contains("needs model.init_from"));
}

TEST_CASE("CSV jobs need the csv keys", "[config]") {
  JobFixture f;
  auto c = f.Parse(
      "[data]\nformat = \"csv\"\ntrain = \"train.csv\"\ntest = \"test.csv\"\nlabel_column = -1\n"
      "header = true\n[model]\nlayers = [{type = \"dense\", units = 2}]\n");
  REQUIRE(c.ok());
  CHECK(c->data.train == f.dir.File("train.csv"));
  CHECK(c->data.label_column == -1);
  CHECK(c->data.header);
}

TEST_CASE("Convolutional layers and the image shape are read from the file", "[config]") {
  JobFixture f;
  const std::string head = f.Job().substr(0, f.Job().find("layers"));
  auto c = f.Parse("[data]\nimage_shape = [1, 28, 28]\n" + head.substr(head.find('\n') + 1) +
                   "layers = [{type = \"conv2d\", filters = 8, kernel = 5, stride = 2, padding = 2,"
                   " init = \"xavier\"}, {type = \"relu\"}, {type = \"maxpool\", size = 3},"
                   " {type = \"flatten\"}, {type = \"dropout\", rate = 0.25},"
                   " {type = \"dense\", units = 10}]\n");
  REQUIRE(c.ok());
  REQUIRE(c->layers.size() == 6);
  const LayerSpec& conv = c->layers[0];
  CHECK(conv.type == "conv2d");
  CHECK(conv.filters == 8);
  CHECK(conv.kernel == 5);
  CHECK(conv.stride == 2);
  CHECK(conv.padding == 2);
  CHECK(conv.init == InitKind::kXavier);
  CHECK(c->layers[2].size == 3);
  CHECK(c->layers[2].stride == 0);  // the window's size
  CHECK(c->layers[4].rate == 0.25);
  CHECK(c->data.image_shape == ImageShape{1, 28, 28});
  auto flat = f.Parse(f.Job());
  REQUIRE(flat.ok());
  CHECK_FALSE(flat->data.image_shape.known());
}

TEST_CASE("Named nodes with inputs and shared weights are read from the file", "[config]") {
  JobFixture f;
  const std::string head = f.Job().substr(0, f.Job().find("layers"));
  auto c = f.Parse(head +
                   "layers = [{type = \"dense\", units = 8, name = \"h\"},"
                   " {type = \"tanh\"}, {type = \"dense\", units = 8, share = \"g\"},"
                   " {type = \"dense\", units = 8, name = \"g\", inputs = [\"input\"]},"
                   " {type = \"add\", name = \"skip\", inputs = [\"dense2\", \"g\"]},"
                   " {type = \"layer_norm\"}, {type = \"gelu\"}, {type = \"sigmoid\"},"
                   " {type = \"concat\", inputs = [\"sigmoid1\", \"h\"]},"
                   " {type = \"dense\", units = 10}]\n");
  INFO(c.status().message());
  REQUIRE(c.ok());
  REQUIRE(c->layers.size() == 10);
  CHECK(c->layers[0].name == "h");
  CHECK(c->layers[2].share == "g");
  CHECK(c->layers[4].inputs == std::vector<std::string>{"dense2", "g"});
  CHECK(c->layers[5].type == "layer_norm");
  CHECK(c->layers[8].inputs == std::vector<std::string>{"sigmoid1", "h"});
}

// Every error path names the key (and where it was set) and what is valid.
TEST_CASE("Bad job files get one line naming the key and what would be valid", "[config]") {
  JobFixture f;
  struct Case {
    const char* name;
    std::string text;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"unknown key", f.Job("[train]\nepoch = 3\n"),
       "job.toml:9: unknown key train.epoch (known keys in [train]: epochs, batch_size"},
      {"unknown section", f.Job("[trian]\nepochs = 3\n"),
       "unknown section [trian] (sections: [job]"},
      {"wrong type", f.Job("[train]\nepochs = \"ten\"\n"),
       "job.toml:9: train.epochs must be an integer, got \"ten\""},
      {"float for int", f.Job("[train]\nbatch_size = 6.5\n"),
       "train.batch_size must be an integer, got 6.5"},
      {"zero batch", f.Job("[train]\nbatch_size = 0\n"),
       "train.batch_size must be >= 1 and <= 65536, got 0"},
      {"negative lr", f.Job("[optimizer]\nlr = -0.1\n"), "optimizer.lr must be > 0"},
      {"momentum of one", f.Job("[optimizer]\nmomentum = 1.5\n"),
       "optimizer.momentum must be > 0 and <= 1, got 1.5"},
      {"beta of one", f.Job("[optimizer]\nbeta2 = 1.0\n"), "optimizer.beta2 must be < 1"},
      {"nan lr", f.Job("[optimizer]\nlr = nan\n"),
       "job.toml:9: optimizer.lr must be a finite number, got nan"},
      {"nan momentum", f.Job("[optimizer]\nmomentum = nan\n"),
       "optimizer.momentum must be a finite number, got nan"},
      {"nan weight decay", f.Job("[optimizer]\nweight_decay = nan\n"),
       "optimizer.weight_decay must be a finite number, got nan"},
      {"nan gamma", f.Job("[schedule]\ngamma = nan\n"),
       "schedule.gamma must be a finite number, got nan"},
      {"nan warm-up", f.Job("[schedule]\nwarmup_epochs = nan\n"),
       "schedule.warmup_epochs must be a finite number, got nan"},
      {"infinite lr", f.Job("[optimizer]\nlr = inf\n"),
       "optimizer.lr must be a finite number, got inf"},
      {"bad enum", f.Job("[optimizer]\ntype = \"lbfgs\"\n"),
       "optimizer.type is \"lbfgs\"; valid values: \"sgd\", \"momentum\", \"adam\", \"adagrad\""},
      {"enum given a bool", f.Job("[output]\nprogress = true\n"),
       "output.progress must be one of \"auto\", \"always\", \"never\", got true"},
      {"bad schedule", f.Job("[schedule]\ntype = \"linear\"\n"), "schedule.type is \"linear\""},
      {"syntax error", "[train\nepochs = 3\n", "job.toml:1:"},
      {"section as value", "train = 3\n" + f.Job(), "train must be a table [train], got 3"},
      {"missing layers",
       "[data]\ntrain_images = \"tr-img\"\ntrain_labels = \"tr-lbl\"\n"
       "test_images = \"te-img\"\ntest_labels = \"te-lbl\"\n",
       "model.layers is missing"},
      {"layers not array", f.Job().substr(0, f.Job().find("layers")) + "layers = 3\n",
       "model.layers must be an array of layer tables, got 3"},
      {"bad layer type",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"conv\", units = 3}]\n",
       "model.layers[0].type is \"conv\"; valid types: \"dense\", \"relu\""},
      {"dense without units",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"dense\"}]\n",
       "model.layers[0] is a dense layer without units"},
      {"negative units",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"dense\", units = -4}]\n",
       "model.layers[0].units must be >= 1"},
      {"unknown layer key",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dense\", units = 4, act = 1}]\n",
       "unknown key model.layers[0].act"},
      {"bad init",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dense\", units = 4, init = \"zeros\"}]\n",
       "model.layers[0].init is \"zeros\"; valid values: \"he\", \"torch\", \"xavier\""},
      {"missing data file",
       "[data]\ntrain_images = \"nope.gz\"\n" + f.Job().substr(f.Job().find("train_labels")),
       "data.train_images: data file " + f.dir.File("nope.gz") + " does not exist"},
      {"missing data key", "[data]\n" + f.Job().substr(f.Job().find("train_labels")),
       "data.train_images is missing: data.format = \"idx\" needs it"},
      {"csv without files", f.Job("").substr(0, 7) + "format = \"csv\"\n" + f.Job().substr(7),
       "data.train is missing: data.format = \"csv\" needs it"},
      {"string for a number", f.Job("[optimizer]\nlr = \"fast\"\n"),
       "job.toml:9: optimizer.lr must be a number, got \"fast\""},
      {"number for a bool", f.Job("[optimizer]\nnesterov = 1\n"),
       "job.toml:9: optimizer.nesterov must be true or false, got 1"},
      {"number for a string", f.Job("[job]\nname = 3\n"),
       "job.toml:9: job.name must be a string, got 3"},
      {"number for a path", f.Job("[output]\nmetrics = 3\n"),
       "job.toml:9: output.metrics must be a string, got 3"},
      {"table for a number", f.Job("[train]\nepochs = {n = 3}\n"),
       "train.epochs must be an integer, got a table"},
      {"integer above its bound", f.Job("[cluster]\nservers = 5000\n"),
       "cluster.servers must be >= 1 and <= 4096, got 5000"},
      {"open lower bound", f.Job("[optimizer]\neps = 0.0\n"),
       "optimizer.eps must be > 0 and <= 1, got 0"},
      {"http port out of range", f.Job("[output]\nhttp_port = 70000\n"),
       "output.http_port must be >= -1 and <= 65535, got 70000"},
      {"http port not a number", f.Job("[output]\nhttp_port = \"auto\"\n"),
       "output.http_port must be an integer, got \"auto\""},
      {"http bind not a string", f.Job("[output]\nhttp_bind = 0\n"),
       "output.http_bind must be a string, got 0"},
      {"shard weights not an array",
       f.Job("[data]\n").substr(0, 0) + "[data]\nhandout = \"static\"\nshard_weights = 3\n" +
           f.Job().substr(7),
       "data.shard_weights must be a non-empty array of positive numbers, got 3"},
      {"shard weights empty",
       "[data]\nhandout = \"static\"\nshard_weights = []\n" + f.Job().substr(7),
       "data.shard_weights must be a non-empty array of positive numbers, got an array"},
      {"shard weight not positive",
       "[data]\nhandout = \"static\"\nshard_weights = [1, 0]\n" + f.Job().substr(7),
       "data.shard_weights must hold positive numbers, got 0"},
      {"shard weights without static", "[data]\nshard_weights = [1, 2]\n" + f.Job().substr(7),
       "job.toml:2: data.shard_weights needs data.handout = \"static\""},
      {"replication above servers", f.Job("[cluster]\nservers = 1\nreplication = 2\n"),
       "job.toml:10: cluster.replication 2 needs at least as many servers, not 1"},
      {"checkpoints within epochs need BSP",
       f.Job("[cluster]\nconsistency = \"asp\"\n[checkpoint]\nevery_steps = 50\n"),
       "checkpoint.every_steps needs cluster.consistency = \"bsp\""},
      {"checkpoints by time need BSP",
       f.Job("[cluster]\nconsistency = \"ssp\"\n[checkpoint]\nevery_seconds = 60\n"),
       "checkpoint.every_seconds needs cluster.consistency = \"bsp\""},
      {"timeout not above heartbeat", f.Job("[cluster]\nheartbeat_ms = 500\ntimeout_ms = 400\n"),
       "job.toml:10: cluster.timeout_ms (400) must be larger than cluster.heartbeat_ms (500)"},
      {"data file is a folder",
       "[data]\ntrain_images = \".\"\n" + f.Job().substr(f.Job().find("train_labels")),
       "data.train_images: data file " + f.dir.path().string() +
           "/ does not exist as a regular file"},
      {"layer not a table", f.Job().substr(0, f.Job().find("layers")) + "layers = [3]\n",
       "model.layers[0] must be a table like {type = \"dense\", units = 64}, got 3"},
      {"layer type not a string",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = 1, units = 3}]\n",
       "model.layers[0].type must be a string, got 1"},
      {"layer units not an integer",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"dense\", units = 2.5}]\n",
       "model.layers[0].units must be an integer, got 2.5"},
      {"layer without type", f.Job().substr(0, f.Job().find("layers")) + "layers = [{units = 3}]\n",
       "model.layers[0] has no type; valid types: \"dense\", \"relu\""},
      {"relu with units",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dense\", units = 3}, {type = \"relu\", units = 3}]\n",
       "model.layers[1].units: a relu layer has no units"},
      {"inputs not a list",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dense\", units = 2, inputs = \"a\"}]\n",
       "model.layers[0].inputs must be a list of node names, e.g. [\"conv2\", \"pool1\"], got "
       "\"a\""},
      {"empty name",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dense\", units = 2, name = \"\"}]\n",
       "model.layers[0].name must be a node's name (a non-empty string), got \"\""},
      {"input not a name",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"add\", inputs = [\"a\", 3]}]\n",
       "model.layers[0].inputs must be a node's name (a non-empty string), got 3"},
      {"no layers", f.Job().substr(0, f.Job().find("layers")) + "layers = []\n",
       "model.layers is empty"},
      {"zero filters",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"conv2d\", filters = 0, kernel = 3}]\n",
       "job.toml:7: model.layers[0].filters must be >= 1 and <= 65536, got 0"},
      {"zero kernel",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"conv2d\", filters = 4, kernel = 0}]\n",
       "model.layers[0].kernel must be >= 1 and <= 1024, got 0"},
      {"negative padding",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"conv2d\", filters = 4, kernel = 3, padding = -1}]\n",
       "model.layers[0].padding must be >= 0 and <= 1024, got -1"},
      {"conv without kernel",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"conv2d\", filters = 4}]\n",
       "model.layers[0] is a conv2d layer without kernel"},
      {"conv with units",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"conv2d\", filters = 4, kernel = 3, units = 2}]\n",
       "model.layers[0].units: a conv2d layer has no units (it takes filters, kernel, stride, "
       "padding, init)"},
      {"pool without size",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"maxpool\", stride = 2}]\n",
       "model.layers[0] is a maxpool layer without size"},
      {"zero pool stride",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"maxpool\", size = 2, stride = 0}]\n",
       "model.layers[0].stride must be >= 1 and <= 1024, got 0"},
      {"flatten with a size",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"flatten\", size = 2}, {type = \"dense\", units = 2}]\n",
       "model.layers[0].size: a flatten layer has no size"},
      {"dropout rate one",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dropout\", rate = 1.0}, {type = \"dense\", units = 2}]\n",
       "model.layers[0].rate must be >= 0 and < 1, got 1.0"},
      {"negative dropout rate",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dense\", units = 2}, {type = \"dropout\", rate = -0.1}]\n",
       "model.layers[1].rate must be >= 0 and < 1, got -0.1"},
      {"dropout rate as text",
       f.Job().substr(0, f.Job().find("layers")) +
           "layers = [{type = \"dropout\", rate = \"half\"}]\n",
       "model.layers[0].rate must be a number, got \"half\""},
      {"dropout without rate",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"dropout\"}]\n",
       "model.layers[0] is a dropout layer without rate"},
      {"unknown layer type",
       f.Job().substr(0, f.Job().find("layers")) + "layers = [{type = \"conv3d\"}]\n",
       "model.layers[0].type is \"conv3d\"; valid types: \"dense\", \"relu\", \"conv2d\", "
       "\"maxpool\", \"flatten\", \"dropout\""},
      {"image shape of two", "[data]\nimage_shape = [28, 28]\n" + f.Job().substr(7),
       "data.image_shape must be [channels, height, width], three positive integers, got [28, 28]"},
      {"image shape of fractions", "[data]\nimage_shape = [1, 2.5, 3]\n" + f.Job().substr(7),
       "data.image_shape must be [channels, height, width]"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      auto r = f.Parse(c.text);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == StatusCode::kInvalidArgument);
      CHECK_THAT(r.status().message(), Catch::Contains(c.expect));
      CHECK(r.status().message().find('\n') == std::string::npos);
    }
  }
}

// Overrides go through the same checks; what only they can get wrong is
// named too.
TEST_CASE("Bad overrides get one line naming the key", "[config]") {
  JobFixture f;
  struct Case {
    const char* name;
    std::string text;
    ConfigOverride o;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"unknown section",
       f.Job(),
       {"trian.epochs", "3"},
       "command line: unknown key trian.epochs (sections: [job], [data]"},
      {"unknown key",
       f.Job(),
       {"output.http", "8080"},
       "command line: unknown key output.http (known keys in [output]: metrics, progress, "
       "http_port, http_bind)"},
      {"section that is a value",
       "train = 3\n" + f.Job(),
       {"train.epochs", "3"},
       "job file: [train] must be a table"},
      {"impossible value",
       f.Job(),
       {"output.http_port", "-2"},
       "command line: output.http_port must be >= -1 and <= 65535, got -2"},
      {"nan",
       f.Job(),
       {"optimizer.lr", "nan"},
       "command line: optimizer.lr must be a finite number, got nan"},
      {"nan in a list",
       f.Job(),
       {"data.shard_weights", "[1, nan]"},
       "command line: data.shard_weights must hold positive numbers, got nan"},
      {"bad enum",
       f.Job(),
       {"cluster.consistency", "eventual"},
       "command line: cluster.consistency is \"eventual\"; valid values: \"bsp\", \"asp\", "
       "\"ssp\""},
      {"missing data file",
       f.Job(),
       {"data.test_labels", "/nonexistent/labels"},
       "command line: data.test_labels: data file /nonexistent/labels does not exist"},
      {"cross-key rule",
       f.Job("[cluster]\nservers = 2\n"),
       {"cluster.replication", "3"},
       "command line: cluster.replication must be >= 1 and <= 2, got 3"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      auto r = f.Parse(c.text, {c.o});
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == StatusCode::kInvalidArgument);
      CHECK_THAT(r.status().message(), Catch::Contains(c.expect));
      CHECK(r.status().message().find('\n') == std::string::npos);
    }
  }
}

TEST_CASE("A job file that cannot be opened is named", "[config]") {
  auto r = LoadJobConfig("/nonexistent/job.toml", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "/nonexistent/job.toml: cannot open the job file");
  TempDir dir;
  auto folder = LoadJobConfig(dir.path().string(), {});
  REQUIRE_FALSE(folder.ok());
  CHECK(folder.status().message() == dir.path().string() + ": the job file is not a regular file");
}

TEST_CASE("The job help lists every key with its default", "[config]") {
  const std::string help = JobConfigHelp();
  for (const char* key : {"[train]", "epochs = 10", "batch_size = 64", "[optimizer]",
                          "type = \"momentum\"", "layers = (none)", "metrics = (none)"}) {
    CHECK_THAT(help, Catch::Contains(key));
  }
}

TEST_CASE("The resolved job parses anywhere to the same job, overrides included", "[config]") {
  JobFixture f;
  const std::vector<ConfigOverride> o = {{"train.epochs", "7"}, {"optimizer.type", "adam"}};
  auto text = ResolvedJobToml(f.Job("[train]\nepochs = 3\n"), "job.toml", f.dir.path().string(), o);
  REQUIRE(text.ok());
  CHECK_THAT(*text, Catch::Contains(f.dir.File("tr-img")));
  // Parsed from elsewhere, without overrides: the same job.
  auto c = ParseJobConfig(*text, "copy.toml", "/nonexistent", {});
  REQUIRE(c.ok());
  CHECK(c->epochs == 7);
  CHECK(c->optimizer.kind == OptimizerKind::kAdam);
  CHECK(c->data.train_images == f.dir.File("tr-img"));
  CHECK(c->layers.size() == 3);
  // A job that does not parse is not written.
  CHECK_FALSE(
      ResolvedJobToml(f.Job(), "job.toml", f.dir.path().string(), {{"train.epochs", "0"}}).ok());
}

}  // namespace
}  // namespace pstrain
