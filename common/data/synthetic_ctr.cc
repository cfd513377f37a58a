#include "common/data/synthetic_ctr.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <unordered_set>
#include <vector>

#include "common/data/handout.h"
#include "common/base/json.h"
#include "common/nn/metrics.h"
#include "common/base/rng.h"

namespace pstrain {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

class Generator {
 public:
  explicit Generator(const CtrOptions& o) : o_(o) {
    for (int f = 0; f < o.fields; ++f) {
      const double t = o.fields == 1 ? 1.0 : static_cast<double>(f) / (o.fields - 1);
      const double v = std::pow(
          10.0,
          1.0 + t * (std::log10(static_cast<double>(std::max<int64_t>(o.largest_vocabulary, 10))) -
                     1.0));
      vocab_.push_back(std::max<int64_t>(2, std::llround(v)));
    }
  }

  // The features of one example (ascending, merged) and its click
  // probability.
  double Draw(Rng& rng, std::vector<std::pair<uint32_t, float>>* out) const {
    out->clear();
    double logit = o_.bias;
    for (int f = 0; f < o_.fields; ++f) {
      const uint64_t value = Zipf(rng, vocab_[f]);
      const uint32_t index = static_cast<uint32_t>(
          Mix64(o_.seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(f) << 48) ^ value) %
          static_cast<uint64_t>(o_.features));
      logit += Weight(index);
      out->push_back({index, 1.0f});
    }
    std::sort(out->begin(), out->end());
    // A collision of two fields on one index: one entry with their sum.
    size_t w = 0;
    for (size_t r = 0; r < out->size(); ++r) {
      if (w > 0 && (*out)[w - 1].first == (*out)[r].first) {
        (*out)[w - 1].second += (*out)[r].second;
      } else {
        (*out)[w++] = (*out)[r];
      }
    }
    out->resize(w);
    return 1.0 / (1.0 + std::exp(-logit));
  }

 private:
  // A rank in [0, n) with P(rank k) roughly proportional to (k + 1)^-zipf
  // (inverse transform of the continuous power law on [1, n + 1)).
  uint64_t Zipf(Rng& rng, int64_t n) const {
    const double s = o_.zipf, u = rng.UniformDouble();
    double x;
    if (std::abs(s - 1.0) < 1e-9) {
      x = std::exp(u * std::log(static_cast<double>(n) + 1.0));
    } else {
      const double a = std::pow(static_cast<double>(n) + 1.0, 1.0 - s);
      x = std::pow((a - 1.0) * u + 1.0, 1.0 / (1.0 - s));
    }
    return std::min<uint64_t>(static_cast<uint64_t>(x) - 1, static_cast<uint64_t>(n - 1));
  }

  double Weight(uint32_t index) const {
    Rng r(o_.seed ^ 0x57A7E5ULL, index);
    return o_.weight_sd * r.Normal();
  }

  CtrOptions o_;
  std::vector<int64_t> vocab_;
};

Status WriteLine(std::FILE* f, int label, const std::vector<std::pair<uint32_t, float>>& feats,
                 const std::string& path) {
  std::string line = label ? "1" : "0";
  char buf[48];
  for (const auto& [index, value] : feats) {
    std::snprintf(buf, sizeof buf, " %u:%g", index, static_cast<double>(value));
    line += buf;
  }
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), f) != line.size()) {
    return DataLoss(path + ": write failed: " + std::strerror(errno));
  }
  return OkStatus();
}

}  // namespace

StatusOr<CtrTruth> WriteSyntheticCtr(const std::string& dir, const CtrOptions& o) {
  if (o.features < 2 || o.features > (int64_t{1} << 31) - 1) {
    return InvalidArgument("--features must be in [2, 2^31 - 1], got " +
                           std::to_string(o.features));
  }
  if (o.fields < 1 || o.fields > 1000) {
    return InvalidArgument("--fields must be in [1, 1000], got " + std::to_string(o.fields));
  }
  if (o.train < 1 || o.test < 2) {
    return InvalidArgument("--train must be >= 1 and --test >= 2 samples");
  }
  if (!(o.zipf > 0) || !(o.weight_sd >= 0) || o.largest_vocabulary < 10) {
    return InvalidArgument("--zipf must be > 0, --weight-sd >= 0, --vocabulary >= 10");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InvalidArgument(dir + ": cannot create the folder: " + ec.message());
  const Generator gen(o);
  CtrTruth truth;
  std::vector<std::pair<uint32_t, float>> feats;
  std::unordered_set<uint32_t> seen;
  std::vector<float> probs;
  std::vector<uint8_t> labels;
  double logloss = 0;
  for (const bool train : {true, false}) {
    const std::string path = dir + (train ? "/train.libsvm" : "/test.libsvm");
    File f(std::fopen(path.c_str(), "w"));
    if (!f) return InvalidArgument(path + ": cannot create: " + std::strerror(errno));
    Rng rng(o.seed, train ? 1 : 2);
    const int64_t n = train ? o.train : o.test;
    for (int64_t i = 0; i < n; ++i) {
      const double p = gen.Draw(rng, &feats);
      const int label = rng.UniformDouble() < p ? 1 : 0;
      RETURN_IF_ERROR(WriteLine(f.get(), label, feats, path));
      if (train) {
        for (const auto& e : feats) seen.insert(e.first);
      } else {
        probs.push_back(static_cast<float>(p));
        labels.push_back(static_cast<uint8_t>(label));
        logloss -= std::log(label ? p : 1.0 - p);
      }
    }
    if (std::fflush(f.get()) != 0) return DataLoss(path + ": write failed");
  }
  truth.best_auc = BinaryAuc(probs, labels);
  truth.best_logloss = logloss / static_cast<double>(o.test);
  int64_t positives = 0;
  for (uint8_t l : labels) positives += l;
  truth.positive_rate = static_cast<double>(positives) / static_cast<double>(o.test);
  truth.train_active = static_cast<int64_t>(seen.size());
  const std::string path = dir + "/truth.json";
  File f(std::fopen(path.c_str(), "w"));
  if (!f) return InvalidArgument(path + ": cannot create: " + std::strerror(errno));
  const std::string json = JsonObject()
                               .Add("best_auc", truth.best_auc)
                               .Add("best_logloss", truth.best_logloss)
                               .Add("positive_rate", truth.positive_rate)
                               .Add("train_active_features", truth.train_active)
                               .Add("features", o.features)
                               .Add("fields", o.fields)
                               .Add("largest_vocabulary", o.largest_vocabulary)
                               .Add("zipf", o.zipf)
                               .Add("weight_sd", o.weight_sd)
                               .Add("bias", o.bias)
                               .Add("train", o.train)
                               .Add("test", o.test)
                               .Add("seed", static_cast<int64_t>(o.seed))
                               .str() +
                           "\n";
  if (std::fwrite(json.data(), 1, json.size(), f.get()) != json.size()) {
    return DataLoss(path + ": write failed");
  }
  return truth;
}

}  // namespace pstrain
