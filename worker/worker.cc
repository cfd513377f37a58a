#include "worker/worker.h"

#include <capnp/message.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "common/base/logging.h"
#include "common/data/handout.h"
#include "common/data/job_data.h"
#include "common/net/node.h"
#include "common/nn/blas.h"
#include "common/nn/model.h"
#include "common/nn/optimizer.h"
#include "worker/duties.h"
#include "worker/ps_client.h"
#include "worker/trainer.h"
#include "worker/weight_pipeline.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kWaitDeadline = std::chrono::minutes(10);

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::vector<int> ToVector(capnp::List<int32_t>::Reader list) {
  std::vector<int> v;
  v.reserve(list.size());
  for (int32_t x : list) v.push_back(x);
  return v;
}

class Worker {
 public:
  Worker(ZmqContext& ctx, const WorkerOptions& o, const std::atomic<bool>* stop)
      : ctx_(ctx), options_(o), stop_(stop) {}
  Status Run(int* exit_code);

 private:
  Status Setup();
  Status OnControl(msg::Control::Reader c);
  // The reactions to the coordinator (WorkerDuties keeps what they change):
  // an epoch to train (queued), a new membership (the slots this worker now
  // owns; any gained mid-epoch are taken over), a new server routing (the
  // current step is pushed again to the new owners), test rows to evaluate
  // (queued).
  Status OnStartEpoch(msg::StartEpoch::Reader e);
  Status OnMembership(msg::Membership::Reader m);
  Status OnRouting(msg::Routing::Reader r);
  Status OnEvaluate(msg::Evaluate::Reader e);

  // Trains the slots this worker owns for the epoch, or just `only` when
  // it is not empty (slots taken over after this worker had finished).
  Status RunEpoch(const WorkerTask& t);
  // Step k of the epoch for the slots it has (WorkerDuties::StepSlots),
  // computed again as often as it is interrupted, then the weights after it.
  Status RunStep(int64_t k);
  // Computes step k of each slot in `slots` with the weights in the model
  // and pushes the gradients.
  Status ComputeSlots(int64_t k, const std::vector<int>& slots);
  Status ComputeSlot(int64_t k, int slot, float lr);
  // Slots of a dead worker came to this one: computes their missing steps
  // up to k (BSP: step k; ASP/SSP: all so far) with the weights it holds;
  // the servers drop whatever the dead worker had already delivered.
  Status TakeOver(int64_t k);
  // A wait for the weights after step k was interrupted: redoes what step
  // k now needs (pushes it again after a routing change, or takes over).
  Status Resume(int64_t k);
  // True when `s` is a wait interrupted by a takeover or a routing change.
  bool Interrupted(const Status& s) const;
  // Gets the weights after step k (`s`: the first attempt's outcome),
  // resuming as often as the wait is interrupted.
  Status FinishPull(int64_t k, Status s);
  Status PullAfter(int64_t k);
  // Overlap: the wait for the weights after step k was interrupted (`s`):
  // back to step k's weights, and finish step k as without overlap.
  Status Recover(int64_t k, Status s);
  template <typename Report>
  void FillCounts(Report r) const;
  Status SendProgress(int64_t steps);  // `steps` of the epoch done
  Status SendEpochDone();              // the counts of run_'s training
  // A restarted coordinator took this worker back: where it stands.
  Status SendState();
  // Waits for the epoch's pushes and reports the epoch.
  Status FinishEpoch();

  Status Evaluate(int epoch, int64_t begin, int64_t end);
  // Fetches the weights after `clock` steps (ASP: the newest) into the
  // model; the model keeps its old weights until all of them arrived.
  // Returns kAborted when slots were handed to this worker meanwhile.
  Status Pull(int64_t clock);
  // Handles control messages while waiting; an error once the coordinator
  // fell silent.
  Status Idle();
  // Sparse models: pulls the rows of the gathered batch from the servers.
  Status FetchRows(Model& model);
  // Tells the coordinator this worker acts on `membership_epoch` now, and
  // where the slots it handed away go over.
  Status AckMembership(uint64_t membership_epoch,
                       const std::vector<WorkerDuties::Release>& released = {});

  ZmqContext& ctx_;
  WorkerOptions options_;
  const std::atomic<bool>* stop_;
  std::unique_ptr<ControlChannel> control_;
  NodeAssignment assignment_;  // what the coordinator gave this worker
  JobData data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KeyLayout> keys_;
  std::unique_ptr<PsClient> client_;
  // The weights of each step, from the servers into the model.
  std::unique_ptr<WeightPipeline> weights_;
  std::unique_ptr<WorkerDuties> duties_;
  FloatBuffer input_;
  std::vector<int32_t> labels_;
  std::vector<PsClient::Ticket> pushes_;
  std::vector<int> todo_;  // ComputeSlots: the slots of the step being computed
  // Sparse models: each slot's rows as pulled for the last two clocks it
  // computed, so that a step computed again (a server died meanwhile; with
  // overlap the step before it too) reads the rows it read the first time
  // and pushes the same gradients.
  using PulledRows = std::vector<std::vector<float>>;         // per table
  std::map<int, std::map<int64_t, PulledRows>> pulled_rows_;  // slot -> clock -> rows
  // The epoch being trained.
  struct EpochRun {
    int epoch = 0;
    int64_t first_clock = 0;
    HandoutPlan plan;
    int64_t first_step = 0;  // above 0: resumed from a cut
  };
  std::optional<EpochRun> run_;
  // Per epoch: what this worker computed.
  double loss_sum_ = 0, compute_s_ = 0, push_wait_s_ = 0, pull_wait_s_ = 0;
  int64_t correct_ = 0, done_samples_ = 0;
  uint64_t hash_ = 0;
  bool done_ = false;
  bool trained_ = false;                // run_'s training is over, and EpochDone said so
  bool stalled_ = false;                // options_.stall_ms was spent
  std::map<int, int64_t> eval_clocks_;  // epoch -> the clock its weights are at
  int exit_code_ = 0;
  // Fault tests: waits, answering the coordinator, until `gate` exists.
  Status WaitForGate(const std::string& gate, const std::string& what);
  Status EvaluateRows(int epoch, int64_t begin, int64_t end);
};

Status Worker::Run(int* exit_code) {
  ASSIGN_OR_RETURN(control_, ControlChannel::Connect(ctx_, options_.coordinator));
  control_->set_launch_token(options_.launch_token);
  ASSIGN_OR_RETURN(assignment_,
                   control_->Join(msg::Role::WORKER, options_.requested_id, NewIncarnation(), "",
                                  std::chrono::seconds(600), "", stop_));
  SetLogPrefix("worker " + std::to_string(assignment_.node_id));
  RETURN_IF_ERROR(Setup());
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initReady().setNodeId(assignment_.node_id);
    RETURN_IF_ERROR(control_->Send(m));
  }
  while (!done_) {
    if (stop_ != nullptr && stop_->load()) return Cancelled("worker stopped by a signal");
    ASSIGN_OR_RETURN(bool readable,
                     control_->socket()->WaitReadable(std::chrono::milliseconds(50)));
    (void)readable;
    Status idle = Idle();
    if (done_) break;
    RETURN_IF_ERROR(idle);
    const std::optional<WorkerTask> t = duties_->NextTask();
    if (!t) continue;
    Status s = t->kind == WorkerTask::kEpoch ? RunEpoch(*t) : Evaluate(t->epoch, t->begin, t->end);
    if (!s.ok() && !done_) return s;  // after a shutdown, an interrupted wait is expected
  }
  *exit_code = exit_code_;
  return OkStatus();
}

Status Worker::Setup() {
  const JobConfig& c = assignment_.config;
  duties_ = std::make_unique<WorkerDuties>(assignment_.node_id, c.cluster.workers);
  SetBlasThreads(c.threads);
  FlushDenormalsToZero();
  ASSIGN_OR_RETURN(data_, LoadJobData(c.data));
  if (data_.train.dim != assignment_.input_dim ||
      data_.train.num_classes != assignment_.num_classes ||
      !(data_.train.shape == assignment_.input_shape)) {
    return InvalidArgument(
        "this worker's data (" + std::to_string(data_.train.dim) + " features, " +
        std::to_string(data_.train.num_classes) + " classes) differs from the coordinator's (" +
        std::to_string(assignment_.input_dim) + ", " + std::to_string(assignment_.num_classes) +
        "): do all hosts see the same files?");
  }
  ASSIGN_OR_RETURN(model_, Model::Build(c.layers, assignment_.input_dim, assignment_.num_classes,
                                        std::max(c.batch_size, c.eval_batch_size),
                                        assignment_.input_shape, SparseOptionsOf(c, &data_)));
  keys_ = std::make_unique<KeyLayout>(model_->layout());
  auto it = std::find(assignment_.workers.begin(), assignment_.workers.end(), assignment_.node_id);
  if (it == assignment_.workers.end()) return Internal("this worker is not in its own assignment");
  const uint64_t incarnation = assignment_.worker_incarnations.at(it - assignment_.workers.begin());
  ClientIdentity id{assignment_.node_id, incarnation, assignment_.membership_epoch};
  ASSIGN_OR_RETURN(client_, PsClient::Connect(ctx_, *keys_, assignment_.servers, id));
  PsClient::Compression compression;
  ASSIGN_OR_RETURN(compression.gradients, ParseWireType(assignment_.config.compress_gradients));
  ASSIGN_OR_RETURN(compression.weights, ParseWireType(assignment_.config.compress_weights));
  compression.topk_ratio = assignment_.config.topk_ratio;
  client_->SetCompression(compression);
  client_->SetIdleHook([this]() -> Status {
    RETURN_IF_ERROR(Idle());
    if (duties_->TakeInterrupt()) return Aborted("slots were handed to this worker");
    return OkStatus();
  });
  const bool overlap = c.cluster.consistency == Consistency::kBsp && c.cluster.overlap;
  weights_ = std::make_unique<WeightPipeline>(*model_, *keys_, *client_, overlap, kWaitDeadline);
  if (!model_->sparse())
    input_ = FloatBuffer(static_cast<size_t>(c.batch_size) * assignment_.input_dim);
  labels_.resize(c.batch_size);
  return OkStatus();
}

Status Worker::Idle() {
  if (stop_ != nullptr && stop_->load()) return Cancelled("worker stopped by a signal");
  RETURN_IF_ERROR(control_->Drain([this](msg::Control::Reader c) { return OnControl(c); }));
  if (done_) return Cancelled("the coordinator ended the job");
  return control_->Tick();
}

Status Worker::AckMembership(uint64_t membership_epoch,
                             const std::vector<WorkerDuties::Release>& released) {
  capnp::MallocMessageBuilder ack;
  auto b = ack.initRoot<msg::Control>().initMembershipAck();
  b.setNodeId(assignment_.node_id);
  b.setMembershipEpoch(membership_epoch);
  auto slots = b.initReleasedSlots(static_cast<unsigned>(released.size()));
  auto steps = b.initReleasedAt(static_cast<unsigned>(released.size()));
  for (size_t i = 0; i < released.size(); ++i) {
    slots.set(static_cast<unsigned>(i), released[i].slot);
    steps.set(static_cast<unsigned>(i), released[i].step);
  }
  return control_->Send(ack);
}

Status Worker::OnControl(msg::Control::Reader c) {
  switch (c.which()) {
    case msg::Control::START_EPOCH:
      return OnStartEpoch(c.getStartEpoch());
    case msg::Control::MEMBERSHIP:
      return OnMembership(c.getMembership());
    case msg::Control::ROUTING:
      return OnRouting(c.getRouting());
    case msg::Control::EVALUATE:
      return OnEvaluate(c.getEvaluate());
    case msg::Control::ADOPTED:
      return SendState();
    case msg::Control::SHUTDOWN:
      done_ = true;
      exit_code_ = c.getShutdown().getExitCode();
      if (exit_code_ != 0) {
        PSTRAIN_LOG(WARNING) << "the coordinator ended this worker: "
                             << c.getShutdown().getReason().cStr();
      }
      return OkStatus();
    default:
      return OkStatus();
  }
}

Status Worker::SendState() {
  PSTRAIN_LOG(INFO) << "a restarted coordinator took this worker back";
  capnp::MallocMessageBuilder m;
  auto st = m.initRoot<msg::Control>().initWorkerState();
  st.setNodeId(assignment_.node_id);
  st.setEpoch(run_ ? run_->epoch : -1);
  st.setFirstClock(run_ ? run_->first_clock : 0);
  st.setSteps(run_ ? run_->plan.steps() : 0);
  st.setTrainingDone(run_.has_value() && trained_);
  st.setFirstStep(run_ ? run_->first_step : 0);
  const std::vector<int>& owners = duties_->owners();
  auto list = st.initSlotOwners(static_cast<unsigned>(owners.size()));
  for (size_t i = 0; i < owners.size(); ++i) list.set(static_cast<unsigned>(i), owners[i]);
  return control_->Send(m);
}

Status Worker::OnStartEpoch(msg::StartEpoch::Reader e) {
  // The epoch this worker trains or trained, asked for again by a
  // coordinator restarted meanwhile: the report, once there is one.
  if (e.getOnlySlots().size() == 0 && run_ && e.getEpoch() == run_->epoch &&
      e.getFirstClock() == run_->first_clock && e.getFirstStep() == run_->first_step) {
    return trained_ ? SendEpochDone() : OkStatus();
  }
  std::vector<int64_t> from;
  for (int64_t f : e.getSlotFrom()) from.push_back(f);
  return duties_->StartEpoch(e.getEpoch(), e.getFirstClock(), e.getSteps(),
                             ToVector(e.getSlotOwners()), ToVector(e.getOnlySlots()),
                             e.getFirstStep(), from);
}

Status Worker::OnMembership(msg::Membership::Reader m) {
  ASSIGN_OR_RETURN(const WorkerDuties::Change change,
                   duties_->NewMembership(ToVector(m.getSlotOwners())));
  client_->set_membership_epoch(m.getMembershipEpoch());
  if (change.gained > 0 && duties_->running()) {
    PSTRAIN_LOG(INFO) << "took over " << change.gained << " slot(s)";
  }
  for (const WorkerDuties::Release& r : change.released) {
    PSTRAIN_LOG(INFO) << "slot " << r.slot << " goes to worker "
                      << duties_->owners()[static_cast<size_t>(r.slot)] << " from step " << r.step;
  }
  return AckMembership(m.getMembershipEpoch(), change.released);
}

Status Worker::OnRouting(msg::Routing::Reader r) {
  std::vector<ServerEntry> servers;
  for (auto si : r.getServers()) servers.push_back(ReadServerInfo(si));
  RETURN_IF_ERROR(client_->UpdateRouting(servers, r.getMembershipEpoch()));
  duties_->NewRouting();
  PSTRAIN_LOG(INFO) << "new server routing (epoch " << r.getMembershipEpoch()
                    << "): redoing the current step";
  return AckMembership(r.getMembershipEpoch());
}

Status Worker::OnEvaluate(msg::Evaluate::Reader e) {
  eval_clocks_.erase(eval_clocks_.begin(), eval_clocks_.lower_bound(e.getEpoch() - 1));
  eval_clocks_[e.getEpoch()] = e.getClock();
  return duties_->Evaluate(e.getEpoch(), e.getBegin(), e.getEnd(), data_.test.count);
}

Status Worker::FetchRows(Model& model) {
  std::vector<RowBlock>& tables = model.tables();
  PsClient::Ticket tickets[2] = {0, 0};
  for (size_t t = 0; t < tables.size(); ++t) {
    ASSIGN_OR_RETURN(tickets[t], client_->PullRows(tables[t].table, tables[t].dim, model.rows(),
                                                   tables[t].values.data()));
  }
  Status s;
  for (size_t t = 0; t < tables.size() && s.ok(); ++t) s = client_->Wait(tickets[t], kWaitDeadline);
  if (!s.ok()) {
    // Replies still to come must not write into the rows any more.
    for (size_t t = 0; t < tables.size(); ++t) client_->Abandon(tickets[t]);
  }
  return s;
}

Status Worker::Pull(int64_t clock) {
  const bool asp = assignment_.config.cluster.consistency == Consistency::kAsp;
  return weights_->Pull(clock, asp ? 0 : clock);
}

Status Worker::ComputeSlots(int64_t k, const std::vector<int>& slots) {
  const JobConfig& c = assignment_.config;
  const HandoutPlan& plan = run_->plan;
  const int64_t clock = run_->first_clock + k;
  const float lr = ScheduledLearningRate(
      c.schedule, c.optimizer.lr, run_->epoch + static_cast<double>(k) / plan.steps(), c.epochs);
  weights_->set_want_clock(clock);
  // A copy (into a buffer kept from step to step): `slots` may be the owned
  // slots, which a membership change during a wait replaces (the caller
  // computes the step again then). Waits run only the control reactions, so
  // ComputeSlots is never entered again meanwhile.
  todo_.assign(slots.begin(), slots.end());
  for (int slot : todo_) {
    if (!plan.Samples(slot, k).empty()) {
      RETURN_IF_ERROR(ComputeSlot(k, slot, lr));
      continue;
    }
    // Every piece must be at `clock` before it takes a push for it.
    if (weights_->overlap()) {
      RETURN_IF_ERROR(weights_->InstallAll(clock));
      RETURN_IF_ERROR(weights_->Prefetch(clock + 1));
    }
    ASSIGN_OR_RETURN(PsClient::Ticket p, client_->PushEmpty({slot, clock, lr, 0, 0}));
    pushes_.push_back(p);
  }
  return OkStatus();
}

Status Worker::ComputeSlot(int64_t k, int slot, float lr) {
  const JobConfig& c = assignment_.config;
  const HandoutPlan& plan = run_->plan;
  const int64_t clock = run_->first_clock + k;
  const std::span<const uint32_t> mine = plan.Samples(slot, k);
  const int n = static_cast<int>(mine.size());
  PsClient::GradientTag tag{slot, clock, lr, n, 0};
  // The model's gradients are lent to ZeroMQ until it has sent them.
  auto t0 = Clock::now();
  RETURN_IF_ERROR(client_->WaitBuffersReleased(kWaitDeadline));
  auto t1 = Clock::now();
  push_wait_s_ += Seconds(t1 - t0);
  const bool sparse = model_->sparse();
  FillBatch(data_.train, mine.data(), n, sparse ? nullptr : input_.data(), labels_.data());
  for (uint32_t s : mine) tag.sample_hash += Mix64(s);
  if (sparse) {
    // The rows this batch touches, fresh from the servers.
    model_->GatherSparse(data_.train, mine.data(), n);
    const auto f0 = Clock::now();
    std::map<int64_t, PulledRows>& pulled = pulled_rows_[slot];
    std::vector<RowBlock>& tables = model_->tables();
    const size_t rows = model_->rows().size();
    if (auto it = pulled.find(clock); it != pulled.end()) {
      for (size_t t = 0; t < tables.size(); ++t) {
        std::copy(it->second[t].begin(), it->second[t].end(), tables[t].values.data());
      }
    } else {
      RETURN_IF_ERROR(FetchRows(*model_));
      PulledRows& kept = pulled[clock];
      kept.resize(tables.size());
      for (size_t t = 0; t < tables.size(); ++t) {
        const float* v = tables[t].values.data();
        kept[t].assign(v, v + rows * static_cast<size_t>(tables[t].dim));
      }
      while (pulled.size() > 2) pulled.erase(pulled.begin());
    }
    t1 = Clock::now();
    pull_wait_s_ += Seconds(t1 - f0);
  }
  // BSP sums the slots' gradients: scale each by the whole step's size so
  // the sum is the mean over the global batch.
  const bool bsp = c.cluster.consistency == Consistency::kBsp;
  const float scale = 1.0f / static_cast<float>(bsp ? plan.StepTotal(k) : n);
  Status push_status;
  model_->SetStepSeed(StepSeed(c.seed, run_->epoch, k, slot));
  weights_->TakeForwardWait();
  LossResult l = model_->TrainStep(
      sparse ? nullptr : input_.data(), labels_.data(), n, scale,
      [&](int first, int last) {
        if (!push_status.ok()) return;
        // The next weights are asked for before the first gradient goes
        // out, so the servers can answer each piece once it is applied.
        if (weights_->overlap()) push_status = weights_->Prefetch(clock + 1);
        if (!push_status.ok()) return;
        const TensorLayout& layout = model_->layout();
        const KeyRange range =
            keys_->Covering(layout[first].offset, layout[last - 1].offset + layout[last - 1].size);
        StatusOr<PsClient::Ticket> p = client_->Push(range, model_->grads().data(), tag);
        if (p.ok()) {
          pushes_.push_back(*p);
        } else {
          push_status = p.status();
        }
      },
      weights_->BeforeForward());
  RETURN_IF_ERROR(weights_->forward_status());
  const double forward_wait_s = weights_->TakeForwardWait();
  pull_wait_s_ += forward_wait_s;
  RETURN_IF_ERROR(push_status);
  for (const RowBlock& t : model_->tables()) {
    // Applied on arrival: the rows' gradients do not wait for the clock.
    ASSIGN_OR_RETURN(PsClient::Ticket p, client_->PushRows(t.table, static_cast<uint32_t>(t.dim),
                                                           model_->rows(), t.grads.data(), tag));
    pushes_.push_back(p);
  }
  RETURN_IF_ERROR(CheckLossFinite(l.loss_sum, run_->epoch, k, slot));
  compute_s_ += Seconds(Clock::now() - t1) - forward_wait_s;
  loss_sum_ += l.loss_sum;
  correct_ += l.correct;
  done_samples_ += n;
  hash_ += tag.sample_hash;
  return OkStatus();
}

Status Worker::TakeOver(int64_t k) {
  const std::vector<int> taken = duties_->TakeTakeover();
  const bool bsp = assignment_.config.cluster.consistency == Consistency::kBsp;
  for (int64_t j = bsp ? k : 0; j <= k && j >= 0; ++j) RETURN_IF_ERROR(ComputeSlots(j, taken));
  return OkStatus();
}

Status Worker::Resume(int64_t k) {
  if (duties_->TakeRerun()) {
    // A server died and its backup took over: push this step again to the
    // new owners (the others drop what they already have).
    return k >= 0 ? ComputeSlots(k, duties_->StepSlots(k)) : OkStatus();
  }
  return TakeOver(k);
}

bool Worker::Interrupted(const Status& s) const {
  return s.code() == StatusCode::kAborted &&
         (duties_->takeover_pending() || duties_->rerun_pending());
}

Status Worker::FinishPull(int64_t k, Status s) {
  const auto t0 = Clock::now();
  while (Interrupted(s)) {
    s = Resume(k);
    if (s.ok()) s = Pull(run_->first_clock + k + 1);
  }
  pull_wait_s_ += Seconds(Clock::now() - t0);
  return s;
}

Status Worker::PullAfter(int64_t k) {
  const auto t0 = Clock::now();
  Status s = Pull(run_->first_clock + k + 1);
  pull_wait_s_ += Seconds(Clock::now() - t0);
  return FinishPull(k, std::move(s));
}

Status Worker::Recover(int64_t k, Status s) {
  weights_->Rewind(run_->first_clock + k);
  return FinishPull(k, std::move(s));
}

Status Worker::RunStep(int64_t k) {
  duties_->set_step(k);
  Status s = ComputeSlots(k, duties_->StepSlots(k));
  while (Interrupted(s)) {
    if (weights_->overlap() && k > 0) {
      RETURN_IF_ERROR(Recover(k - 1, std::move(s)));
    } else {
      duties_->ClearRerun();  // the weights of step k are complete: redoing step k suffices
    }
    // With the slots taken over meanwhile.
    s = ComputeSlots(k, duties_->StepSlots(k));
  }
  RETURN_IF_ERROR(s);
  if (duties_->takeover_pending()) RETURN_IF_ERROR(TakeOver(k));  // handed over while computing
  if (!weights_->overlap()) return PullAfter(k);
  if (k + 1 < run_->plan.steps()) return OkStatus();
  // The epoch's last weights, in the model for evaluation.
  const auto t0 = Clock::now();
  s = weights_->InstallAll(run_->first_clock + k + 1);
  pull_wait_s_ += Seconds(Clock::now() - t0);
  if (Interrupted(s)) s = Recover(k, std::move(s));
  return s;
}

Status Worker::RunEpoch(const WorkerTask& t) {
  const JobConfig& c = assignment_.config;
  const int64_t first_clock = t.first_clock, steps = t.steps;
  run_ = EpochRun{t.epoch, first_clock, EpochPlan(c, t.epoch, data_.train.count), t.first_step};
  if (run_->plan.steps() != steps) {
    return Internal("the coordinator planned " + std::to_string(steps) + " steps, this worker " +
                    std::to_string(run_->plan.steps()));
  }
  loss_sum_ = compute_s_ = push_wait_s_ = pull_wait_s_ = 0;
  correct_ = done_samples_ = 0;
  hash_ = 0;
  trained_ = false;
  auto last_progress = Clock::now();
  auto last_idle = Clock::now();
  // Weights for the first step, unless the last pull already brought them.
  const bool bsp = c.cluster.consistency == Consistency::kBsp;
  // (A job resumed from a cut within the epoch starts at the cut's step; a
  // worker that joined mid-epoch where its slots' givers stopped.)
  const int64_t begin = duties_->FirstStep();
  if (begin > t.first_step) {
    PSTRAIN_LOG(INFO) << "joining epoch " << t.epoch + 1 << " at step " << begin << " of " << steps;
  }
  if (!bsp || weights_->version() != first_clock + begin) RETURN_IF_ERROR(PullAfter(begin - 1));
  for (int64_t k = begin; k < steps; ++k) {
    if (options_.stall_ms > 0 && !stalled_ && k == begin + 1) {
      stalled_ = true;
      PSTRAIN_LOG(WARNING) << "standing still for " << options_.stall_ms << " ms (fault test)";
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.stall_ms));
    }
    if (k == options_.step_gate_at) {
      RETURN_IF_ERROR(WaitForGate(options_.step_gate, "step " + std::to_string(k)));
    }
    RETURN_IF_ERROR(RunStep(k));
    if (Clock::now() - last_idle > std::chrono::milliseconds(100)) {
      last_idle = Clock::now();
      RETURN_IF_ERROR(Idle());
    }
    if (Clock::now() - last_progress > std::chrono::milliseconds(500)) {
      last_progress = Clock::now();
      RETURN_IF_ERROR(SendProgress(k + 1));
    }
  }
  return FinishEpoch();
}

// The counts Progress and EpochDone share.
template <typename Report>
void Worker::FillCounts(Report r) const {
  r.setNodeId(assignment_.node_id);
  r.setEpoch(run_->epoch);
  r.setSamples(done_samples_);
  r.setLossSum(loss_sum_);
}

Status Worker::SendProgress(int64_t steps) {
  capnp::MallocMessageBuilder m;
  auto p = m.initRoot<msg::Control>().initProgress();
  FillCounts(p);
  p.setSteps(steps);
  return control_->Send(m);
}

Status Worker::FinishEpoch() {
  const auto t0 = Clock::now();
  for (PsClient::Ticket p : pushes_) {
    Status s = client_->Wait(p, kWaitDeadline);
    // A duplicate refused as running ahead cannot happen; anything else is.
    if (!s.ok() && s.code() != StatusCode::kAborted) return s;
  }
  pushes_.clear();
  push_wait_s_ += Seconds(Clock::now() - t0);
  trained_ = true;
  duties_->FinishRun();
  return SendEpochDone();
}

Status Worker::SendEpochDone() {
  capnp::MallocMessageBuilder m;
  auto d = m.initRoot<msg::Control>().initEpochDone();
  FillCounts(d);
  d.setCorrect(correct_);
  d.setSampleHash(hash_);
  d.setComputeSeconds(compute_s_);
  d.setPushWaitSeconds(push_wait_s_);
  d.setPullWaitSeconds(pull_wait_s_);
  d.setPeakRssBytes(PeakRssBytes());
  return control_->Send(m);
}

Status Worker::WaitForGate(const std::string& gate, const std::string& what) {
  if (gate.empty() || std::filesystem::exists(gate)) return OkStatus();
  PSTRAIN_LOG(INFO) << "waiting for " << gate << " before " << what;
  while (!std::filesystem::exists(gate)) {
    ASSIGN_OR_RETURN(bool readable,
                     control_->socket()->WaitReadable(std::chrono::milliseconds(50)));
    (void)readable;
    RETURN_IF_ERROR(Idle());
  }
  return OkStatus();
}

Status Worker::Evaluate(int epoch, int64_t begin, int64_t end) {
  duties_->set_evaluating(true);
  Status s = EvaluateRows(epoch, begin, end);
  duties_->set_evaluating(false);
  return s;
}

Status Worker::EvaluateRows(int epoch, int64_t begin, int64_t end) {
  RETURN_IF_ERROR(WaitForGate(options_.eval_gate, "evaluating"));
  const bool rerun = duties_->TakeRerun();
  // BSP: the weights the epoch ended with, which a worker that trained it
  // holds; one that joined meanwhile pulls them.
  const auto clock = eval_clocks_.find(epoch);
  const bool stale = clock != eval_clocks_.end() && weights_->version() != clock->second;
  if (assignment_.config.cluster.consistency != Consistency::kBsp || rerun || stale) {
    const int64_t want = stale ? clock->second : weights_->version();
    Status s;
    do {
      s = Pull(want);
    } while (s.code() == StatusCode::kAborted && !done_);
    RETURN_IF_ERROR(s);
  }
  // Between batches the worker answers the coordinator (a membership
  // change, more ranges to evaluate), however long the range.
  ASSIGN_OR_RETURN(const EvalResult r,
                   EvaluateRange(
                       *model_, data_.test, begin, end, [this](Model& m) { return FetchRows(m); },
                       [this] { return Idle(); }));
  capnp::MallocMessageBuilder m;
  auto d = m.initRoot<msg::Control>().initEvalDone();
  d.setNodeId(assignment_.node_id);
  d.setEpoch(epoch);
  d.setLossSum(r.loss_sum);
  d.setCorrect(r.correct);
  d.setCount(r.count);
  d.setBegin(begin);
  // Binary models: the scores, for the coordinator's AUC (a message holds
  // up to kMaxHeaderBytes: about 250,000 of them).
  if (!r.scores.empty() && r.scores.size() * sizeof(float) + 4096 < kMaxHeaderBytes) {
    auto scores = d.initScores(static_cast<unsigned>(r.scores.size()));
    for (size_t i = 0; i < r.scores.size(); ++i) scores.set(static_cast<unsigned>(i), r.scores[i]);
  }
  return control_->Send(m);
}

}  // namespace

Status RunWorker(const WorkerOptions& options, const std::atomic<bool>* stop, int* exit_code) {
  ZmqContext ctx;
  if (options.key) RETURN_IF_ERROR(ctx.EnableCurve(*options.key));
  Worker worker(ctx, options, stop);
  return worker.Run(exit_code);
}

}  // namespace pstrain
