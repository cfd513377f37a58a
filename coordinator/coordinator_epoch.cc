// One epoch as the coordinator runs it: training, the sample-set check,
// evaluation (Coordinator::RunEpoch and its parts).
#include <algorithm>
#include <cmath>
#include <utility>

#include "common/base/logging.h"
#include "common/data/handout.h"
#include "common/data/job_data.h"
#include "common/nn/metrics.h"
#include "common/nn/model.h"
#include "common/nn/optimizer.h"
#include "common/ps/keys.h"
#include "coordinator/coordinator.h"

namespace pstrain {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

StatusOr<EpochStats> Coordinator::RunEpoch(int epoch) {
  const auto start = Clock::now();
  std::map<int, WorkerEpoch> done;  // summed over a worker's reports
  ASSIGN_OR_RETURN(const int64_t steps, TrainEpoch(epoch, &done));
  EpochStats e = SummariseTraining(epoch, done);
  e.train_seconds = Since(start);
  if (adoption_.has_value() && adoption_->epoch == epoch) {
    // Most of it ran before this coordinator: the workers' time says more.
    e.adopted = true;
    e.train_seconds = std::max(e.train_seconds, e.compute_s + e.push_wait_s + e.pull_wait_s);
  }
  e.resumed_at_step = current_.first_step;
  RETURN_IF_ERROR(CheckSampleSet(current_.first_clock, steps, &e));
  clock_ = current_.first_clock + steps;
  RETURN_IF_ERROR(EvaluateEpoch(epoch, &e));
  e.seconds = Since(start);
  current_ = EpochState{};
  book_.EndEpoch();
  PublishEpoch(e, done);
  return e;
}

StatusOr<int64_t> Coordinator::TrainEpoch(int epoch, std::map<int, WorkerEpoch>* done) {
  const JobConfig& c = options_.config;
  const auto start = Clock::now();
  const HandoutPlan plan = EpochPlan(c, epoch, train_count_);
  // Slots spread over the live workers (a replacement gets its share here).
  const std::vector<int> live = LiveWorkerIds();
  if (live.empty()) return Unavailable("no live worker");
  if (adoption_.has_value() && adoption_->epoch == epoch) {
    // Taken back mid-epoch: the slots stay with whom the workers say.
    book_.SetOwners(adoption_->owners);
  } else {
    book_.SpreadSlots(live);
  }
  book_.StartEpoch(epoch, live);
  current_ = EpochState{};
  current_.epoch = epoch;
  // A resume from a cut starts at the cut's step: clock_ is the cut's clock.
  current_.first_step = std::exchange(resume_step_, 0);
  if (current_.first_step >= plan.steps()) {
    return Internal("a checkpoint after step " + std::to_string(current_.first_step) +
                    " of an epoch of " + std::to_string(plan.steps()) + " steps");
  }
  current_.first_clock = clock_ - current_.first_step;
  current_.steps = plan.steps();
  PublishPhase("training", epoch + 1);
  board_.Update([&](ClusterStatus& s) { s.epoch_total = train_count_; });
  RETURN_IF_ERROR(ScheduleCuts());
  for (Node* w : NodesOf(msg::Role::WORKER)) {
    if (!w->ready) continue;
    RETURN_IF_ERROR(SendStartEpoch(*w, {}));
  }
  std::map<int, std::pair<int64_t, double>> progress;
  auto handler = [&](Node& n, msg::Control::Reader m) -> Status {
    if (m.which() == msg::Control::PROGRESS && m.getProgress().getEpoch() == epoch) {
      progress[n.id] = {m.getProgress().getSamples(), m.getProgress().getLossSum()};
      progress_steps_ = std::max(progress_steps_, m.getProgress().getSteps());
      int64_t samples = 0;
      double loss = 0;
      for (auto& [id, p] : progress) {
        samples += p.first;
        loss += p.second;
      }
      const double t = Since(start);
      console_->Progress({epoch + 1, c.epochs, samples, train_count_,
                          samples > 0 ? loss / samples : 0, t > 0 ? samples / t : 0, t});
      PublishProgress(progress, train_count_, t);
    } else if (m.which() == msg::Control::EPOCH_DONE && m.getEpochDone().getEpoch() == epoch) {
      // Counted once for each time the worker was given slots to train.
      if (!book_.Trained(n.id)) {
        return InvalidArgument("an epochDone for epoch " + std::to_string(epoch + 1) +
                               " that it was not asked for or had sent already");
      }
      auto d = m.getEpochDone();
      WorkerEpoch& x = (*done)[n.id];
      x.samples += d.getSamples();
      x.loss += d.getLossSum();
      x.correct += d.getCorrect();
      x.compute += d.getComputeSeconds();
      x.push += d.getPushWaitSeconds();
      x.pull += d.getPullWaitSeconds();
      x.peak_rss = std::max(x.peak_rss, d.getPeakRssBytes());
    }
    return OkStatus();
  };
  // Training is as long as it is; liveness (heartbeats) bounds the wait.
  progress_steps_ = current_.first_step;
  while (!book_.AllTrained()) {
    RETURN_IF_ERROR(Pump(std::chrono::milliseconds(50), handler));
    RETURN_IF_ERROR(MaybeTimedCut(start));
  }
  // The epoch's cuts are behind every server now: each is written or
  // refused soon. Waiting keeps their folders out of the way of the epoch's
  // own checkpoint and of pruning.
  RETURN_IF_ERROR(
      WaitUntil([&] { return cuts_.empty(); },
                "the servers to write the checkpoints of epoch " + std::to_string(epoch + 1),
                std::chrono::seconds(600), handler));
  return plan.steps();
}

EpochStats Coordinator::SummariseTraining(int epoch, const std::map<int, WorkerEpoch>& done) const {
  const JobConfig& c = options_.config;
  EpochStats e;
  e.epoch = epoch + 1;
  double compute = 0, push = 0, pull = 0;
  int64_t worker_samples = 0;
  for (auto& [id, d] : done) {
    worker_samples += d.samples;
    e.train_loss += d.loss;
    e.train_accuracy += static_cast<double>(d.correct);
    compute += d.compute;
    push += d.push;
    pull += d.pull;
    e.worker_peak_rss = std::max(e.worker_peak_rss, d.peak_rss);
  }
  e.train_loss /= std::max<int64_t>(worker_samples, 1);
  e.train_accuracy /= static_cast<double>(std::max<int64_t>(worker_samples, 1));
  const double reporting = std::max<size_t>(done.size(), 1);
  e.compute_s = compute / reporting;
  e.push_wait_s = push / reporting;
  e.pull_wait_s = pull / reporting;
  e.lr = ScheduledLearningRate(c.schedule, c.optimizer.lr, epoch + 1.0, c.epochs);
  return e;
}

Status Coordinator::CheckSampleSet(int64_t first_clock, int64_t steps, EpochStats* e) {
  const uint64_t token = static_cast<uint64_t>(first_clock) * 2 + 1;
  std::map<int, std::pair<int64_t, uint64_t>> applied;
  std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
  RETURN_IF_ERROR(RequestStats(token, first_clock, first_clock + steps));
  RETURN_IF_ERROR(WaitUntil(
      [&] { return applied.size() == servers.size(); }, "the servers' sample counts",
      std::chrono::seconds(120),
      [&](Node& n, msg::Control::Reader m) -> Status {
        if (m.which() == msg::Control::STATS_REPLY && m.getStatsReply().getToken() == token) {
          applied[n.id] = {m.getStatsReply().getSamples(), m.getStatsReply().getSampleHash()};
        }
        return OkStatus();
      }));
  const uint64_t expected_hash = SampleSetHash(train_count_);
  e->sample_set_ok = 1;
  e->samples = train_count_;
  for (auto& [id, sh] : applied) {
    // Servers of embedding rows only (no dense keys) count no samples.
    bool dense = false;
    for (size_t r = 0; r < ranges_.size(); ++r) {
      dense = dense || (primary_[r] == id && !IsRowBucket(ranges_[r]));
    }
    if (!dense) continue;
    if (sh.first != train_count_ || sh.second != expected_hash) {
      e->sample_set_ok = 0;
      e->samples = std::min(e->samples, sh.first);
      PSTRAIN_LOG(ERROR) << "epoch " << e->epoch << ": server " << id << " applied updates from "
                         << sh.first << " samples, not each of the " << train_count_
                         << " exactly once";
    }
  }
  e->samples_per_s = e->samples / std::max(e->train_seconds, 1e-9);
  return OkStatus();
}

Status Coordinator::EvaluateEpoch(int epoch, EpochStats* e) {
  PublishPhase("evaluating", 0);
  const std::vector<Node*> evaluators = LiveWorkers();
  std::vector<int> evaluator_ids;
  for (Node* n : evaluators) evaluator_ids.push_back(n->id);
  const std::vector<WorkBook::EvalRange> ranges = book_.StartEvaluation(test_count_, evaluator_ids);
  for (size_t i = 0; i < ranges.size(); ++i) {
    RETURN_IF_ERROR(SendEvaluate(*evaluators[i], ranges[i].begin, ranges[i].end));
  }
  double loss = 0;
  int64_t correct = 0, count = 0, scored = 0;
  std::vector<float> scores(test_labels_.size());
  auto eval_handler = [&](Node& n, msg::Control::Reader m) -> Status {
    if (m.which() == msg::Control::EVAL_DONE && m.getEvalDone().getEpoch() == epoch) {
      auto d = m.getEvalDone();
      // The outstanding range this answers; a report of anything else (a
      // range already counted, rows it was not given) is dropped.
      if (!book_.Evaluated(n.id, d.getBegin(), d.getCount())) {
        return InvalidArgument("an evalDone of " + std::to_string(d.getCount()) +
                               " test rows from " + std::to_string(d.getBegin()) +
                               " that it does not hold");
      }
      loss += d.getLossSum();
      correct += d.getCorrect();
      count += d.getCount();
      const auto s = d.getScores();
      if (s.size() > 0 && d.getBegin() >= 0 &&
          d.getBegin() + static_cast<int64_t>(s.size()) <= static_cast<int64_t>(scores.size())) {
        for (unsigned i = 0; i < s.size(); ++i) scores[d.getBegin() + i] = s[i];
        scored += s.size();
      }
    }
    return OkStatus();
  };
  RETURN_IF_ERROR(WaitUntil([&] { return book_.AllEvaluated(); },
                            "the workers to evaluate epoch " + std::to_string(epoch + 1),
                            std::chrono::hours(24), eval_handler));
  e->test_samples = count;
  if (count != test_count_) {
    PSTRAIN_LOG(ERROR) << "epoch " << epoch + 1 << ": the test metrics cover " << count << " of "
                       << test_count_ << " test samples";
  }
  e->test_loss = loss / std::max<int64_t>(count, 1);
  e->test_accuracy = static_cast<double>(correct) / std::max<int64_t>(count, 1);
  if (scored > 0 && scored == test_count_) {
    e->test_auc = BinaryAuc(scores, test_labels_);
  } else if (scored > 0) {
    PSTRAIN_LOG(WARNING) << "epoch " << epoch + 1 << ": scores came for " << scored << " of "
                         << test_count_ << " test samples; no AUC";
  }
  return OkStatus();
}

Status Coordinator::RequestStats(uint64_t token, int64_t clock_begin, int64_t clock_end) {
  for (Node* s : NodesOf(msg::Role::SERVER)) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<msg::Control>().initStatsRequest();
    r.setToken(token);
    r.setClockBegin(clock_begin);
    r.setClockEnd(clock_end);
    RETURN_IF_ERROR(SendTo(*s, m));
  }
  return OkStatus();
}

Status Coordinator::GatherFinalStats(FinalStats* f) {
  const JobConfig& c = options_.config;
  // weights_l2 from the servers' sums of squares, the digest from theirs.
  std::map<int, double> sums;
  uint64_t digest = 0;
  int64_t digest_blocks = 0;
  std::string refusals = "[";  // becomes a JSON array, one object per server
  const uint64_t token = static_cast<uint64_t>(clock_) * 2 + 2;
  std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
  RETURN_IF_ERROR(RequestStats(token, clock_, clock_));
  RETURN_IF_ERROR(WaitUntil([&] { return sums.size() == servers.size(); },
                            "the servers' parameter statistics", std::chrono::seconds(60),
                            [&](Node& n, msg::Control::Reader m) -> Status {
                              if (m.which() == msg::Control::STATS_REPLY &&
                                  m.getStatsReply().getToken() == token) {
                                auto r = m.getStatsReply();
                                if (!sums.emplace(n.id, r.getSumSquares()).second) {
                                  return OkStatus();  // a repeated reply
                                }
                                digest += r.getWeightsDigest();
                                digest_blocks += r.getDigestBlocks();
                                refusals += JsonObject()
                                                .Add("id", n.id)
                                                .Add("updates_applied", r.getUpdatesApplied())
                                                .Add("pushes_refused", r.getPushesRefused())
                                                .Add("bad_messages", r.getBadMessages())
                                                .Add("nonfinite_refused", r.getNonFiniteRefused())
                                                .Add("sparse_rows", r.getSparseRows())
                                                .Add("sparse_bytes", r.getSparseBytes())
                                                .str() +
                                            ",";
                              }
                              return OkStatus();
                            }));
  refusals.back() = ']';
  RETURN_IF_ERROR(
      metrics_->Write(JsonObject().Add("event", "server_stats").AddRaw("servers", refusals)));
  double total = 0;
  for (auto& [id, s] : sums) total += s;
  f->weights_l2 = std::sqrt(total);
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                   Model::Build(c.layers, input_dim_, num_classes_, 1, input_shape_,
                                SparseOptionsOf(c, nullptr)));
  f->params = static_cast<int64_t>(model->layout().parameter_count());
  const size_t blocks = KeyLayout(model->layout()).blocks().size();
  if (digest_blocks != static_cast<int64_t>(blocks)) {
    return Internal("the servers' weights digests cover " + std::to_string(digest_blocks) +
                    " blocks of the model's " + std::to_string(blocks));
  }
  f->weights_digest = digest;
  return OkStatus();
}

}  // namespace pstrain
