// A synthetic click-through data set drawn from a known model, written in
// LibSVM format, so that the best achievable AUC and log-loss are known.
//
// The model: `fields` categorical fields (one active feature each, like ad
// id, site, user segment); field f has a vocabulary of V_f values, log-spaced
// from 10 to `largest_vocabulary`, and an example draws its value of each
// field from a Zipf distribution (exponent `zipf`), as real categorical
// data is. Each (field, value) is hashed into a space of `features`
// indices, and each index has a weight w ~ N(0, weight_sd^2) that depends
// only on (seed, index). An example is clicked with probability
// sigmoid(bias + sum of its features' weights). Collisions of the hash are
// part of the model (two fields on one index give the value 2).
#pragma once

#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace pstrain {

struct CtrOptions {
  int64_t features = 10'000'000;
  int fields = 24;
  int64_t largest_vocabulary = 100'000;
  double zipf = 1.5;
  double weight_sd = 0.5;
  double bias = -1.5;  // about 14% clicks
  int64_t train = 1'000'000;
  int64_t test = 100'000;
  uint64_t seed = 1;
};

// What the generating model achieves on the test set it wrote.
struct CtrTruth {
  double best_auc = 0;       // AUC of the true probabilities on the test set
  double best_logloss = 0;   // mean log-loss of the true probabilities on it
  double positive_rate = 0;  // fraction of test labels that are 1
  int64_t train_active = 0;  // distinct feature indices in the training set
};

// Writes DIR/train.libsvm, DIR/test.libsvm and DIR/truth.json (the CtrTruth
// and the options); DIR is created if missing.
StatusOr<CtrTruth> WriteSyntheticCtr(const std::string& dir, const CtrOptions& options);

}  // namespace pstrain
