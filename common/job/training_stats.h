// What a training run reports: per-epoch figures and the final result. Made
// by whoever trains (a standalone trainer or the coordinator gathering its
// workers) and consumed by the metrics log and the terminal. Value types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pstrain {

struct EpochStats {
  int epoch = 0;              // 1-based
  double train_loss = 0;      // mean over the epoch's training samples
  double train_accuracy = 0;  // fraction of training samples classified right
  double test_loss = 0;       // mean over the test set, after the epoch
  double test_accuracy = 0;   // fraction of the test set
  double test_auc = -1;       // binary models: area under the ROC curve (-1: none)
  int64_t test_samples = 0;   // test samples the test figures cover (the whole set)
  int64_t samples = 0;        // training samples processed in the epoch
  double train_seconds = 0;   // wall time of the training part
  double seconds = 0;         // wall time of the epoch, evaluation included
  double samples_per_s = 0;   // samples / train_seconds
  float lr = 0;               // learning rate at the epoch's end
  // Above 0: the job resumed from a checkpoint taken after this many steps
  // of the epoch, and the training loss and accuracy cover the steps after.
  int64_t resumed_at_step = 0;
  // A restarted coordinator took the epoch over while it ran: its wall
  // times are the workers' own (compute and waits), not the coordinator's.
  bool adopted = false;
  // Distributed runs only (negative: not measured).
  int sample_set_ok = -1;        // 1 if every sample was processed exactly once
  double compute_s = -1;         // mean per worker: forward + backward
  double push_wait_s = -1;       // mean per worker: waiting for push acks/buffers
  double pull_wait_s = -1;       // mean per worker: waiting for fresh weights
  int64_t worker_peak_rss = -1;  // the largest peak resident memory of a worker (bytes)
};

// One worker's share of a distributed run.
struct WorkerTotals {
  int id = 0;
  int64_t samples = 0;       // training samples it processed
  double train_seconds = 0;  // wall time of the epochs it took part in
  bool alive = true;         // false: it died during the run
};

struct FinalStats {
  int epochs = 0;
  double test_loss = 0;
  double test_accuracy = 0;
  double test_auc = -1;   // binary models (-1: none)
  double weights_l2 = 0;  // L2 norm of all parameters
  // common/ps/weights_digest.h: equal digests, equal weights bit for bit.
  uint64_t weights_digest = 0;
  int64_t params = 0;
  double seconds = 0;  // whole run
  // Distributed runs only.
  std::vector<WorkerTotals> workers;
  int failures = -1;  // nodes that died and were recovered from (-1: not measured)
};

// Progress within an epoch, for the terminal.
struct ProgressStats {
  int epoch = 0;
  int epochs = 0;
  int64_t done = 0;   // samples processed so far in this epoch
  int64_t total = 0;  // samples in the epoch
  double loss = 0;    // running mean training loss of this epoch
  double samples_per_s = 0;
  double elapsed = 0;  // seconds since the epoch began
};

}  // namespace pstrain
