#include "worker/worker.h"

#include <capnp/message.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/blas.h"
#include "common/handout.h"
#include "common/job_data.h"
#include "common/logging.h"
#include "common/model.h"
#include "common/node.h"
#include "worker/ps_client.h"
#include "worker/trainer.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kWaitDeadline = std::chrono::minutes(10);

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class Worker {
 public:
  Worker(ZmqContext& ctx, const WorkerOptions& o, const std::atomic<bool>* stop)
      : ctx_(ctx), options_(o), stop_(stop) {}
  Status Run(int* exit_code);

 private:
  Status Setup();
  Status OnControl(msg::Control::Reader c);
  Status RunEpoch(int epoch, int64_t first_clock, int64_t steps);
  Status Evaluate(int epoch, int64_t begin, int64_t end);
  // Pulls every key; BSP/SSP wait for `clock`, ASP takes the newest.
  Status PullAll(int64_t clock);
  // Sends heartbeats and handles control messages while waiting.
  Status Idle();

  ZmqContext& ctx_;
  WorkerOptions options_;
  const std::atomic<bool>* stop_;
  std::unique_ptr<ControlChannel> control_;
  NodeAssignment a_;
  JobData data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KeyLayout> keys_;
  std::unique_ptr<PsClient> client_;
  int my_index_ = -1;  // position among the live workers
  int64_t clock_ = 0;  // the next step's clock
  FloatBuffer input_;
  std::vector<int32_t> labels_;
  std::vector<PsClient::Ticket> pushes_;
  bool done_ = false;
  int exit_code_ = 0;
  // Work handed out by the coordinator, run outside the control handler.
  struct Task {
    enum Kind { kNone, kEpoch, kEval } kind = kNone;
    int epoch = 0;
    int64_t a = 0, b = 0;
  } task_;
};

Status Worker::Run(int* exit_code) {
  ASSIGN_OR_RETURN(control_, ControlChannel::Connect(ctx_, options_.coordinator));
  ASSIGN_OR_RETURN(a_, control_->Join(msg::Role::WORKER, options_.requested_id, NewIncarnation(),
                                      "", std::chrono::seconds(600)));
  SetLogPrefix("worker " + std::to_string(a_.node_id));
  RETURN_IF_ERROR(Setup());
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<msg::Control>().initReady().setNodeId(a_.node_id);
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
    const Task t = task_;
    task_ = Task{};
    Status s;
    if (t.kind == Task::kEpoch) s = RunEpoch(t.epoch, t.a, t.b);
    if (t.kind == Task::kEval) s = Evaluate(t.epoch, t.a, t.b);
    if (!s.ok() && !done_) return s;  // after a shutdown, an interrupted wait is expected
  }
  *exit_code = exit_code_;
  return OkStatus();
}

Status Worker::Setup() {
  const JobConfig& c = a_.config;
  SetBlasThreads(c.threads);
  FlushDenormalsToZero();
  ASSIGN_OR_RETURN(data_, LoadJobData(c.data));
  if (data_.train.dim != a_.input_dim || data_.train.num_classes != a_.num_classes) {
    return InvalidArgument("this worker's data (" + std::to_string(data_.train.dim) +
                           " features, " + std::to_string(data_.train.num_classes) +
                           " classes) differs from the coordinator's (" +
                           std::to_string(a_.input_dim) + ", " + std::to_string(a_.num_classes) +
                           "): do all hosts see the same files?");
  }
  ASSIGN_OR_RETURN(model_, Model::Build(c.layers, a_.input_dim, a_.num_classes,
                                        std::max(c.batch_size, c.eval_batch_size)));
  keys_ = std::make_unique<KeyLayout>(model_->layout());
  auto it = std::find(a_.workers.begin(), a_.workers.end(), a_.node_id);
  if (it == a_.workers.end()) return Internal("this worker is not in its own assignment");
  my_index_ = static_cast<int>(it - a_.workers.begin());
  ClientIdentity id{a_.node_id, a_.worker_incarnations.at(my_index_), a_.membership_epoch};
  ASSIGN_OR_RETURN(client_, PsClient::Connect(ctx_, *keys_, a_.servers, id));
  client_->SetIdleHook([this] { return Idle(); });
  input_ = FloatBuffer(static_cast<size_t>(c.batch_size) * a_.input_dim);
  labels_.resize(c.batch_size);
  return OkStatus();
}

Status Worker::Idle() {
  if (stop_ != nullptr && stop_->load()) return Cancelled("worker stopped by a signal");
  RETURN_IF_ERROR(control_->Drain([this](msg::Control::Reader c) { return OnControl(c); }));
  if (done_) return Cancelled("the coordinator ended the job");
  return control_->Tick();
}

Status Worker::OnControl(msg::Control::Reader c) {
  switch (c.which()) {
    case msg::Control::START_EPOCH: {
      auto e = c.getStartEpoch();
      if (e.getSteps() < 0 || e.getEpoch() < 0) return InvalidArgument("bad StartEpoch");
      task_ = {Task::kEpoch, e.getEpoch(), e.getFirstClock(), e.getSteps()};
      return OkStatus();
    }
    case msg::Control::EVALUATE: {
      auto e = c.getEvaluate();
      if (e.getBegin() < 0 || e.getEnd() > data_.test.count || e.getBegin() > e.getEnd()) {
        return InvalidArgument("evaluation rows outside the test set");
      }
      task_ = {Task::kEval, e.getEpoch(), e.getBegin(), e.getEnd()};
      return OkStatus();
    }
    case msg::Control::SHUTDOWN:
      done_ = true;
      exit_code_ = c.getShutdown().getExitCode();
      return OkStatus();
    default:
      return OkStatus();
  }
}

Status Worker::PullAll(int64_t clock) {
  const int64_t want = a_.config.cluster.consistency == "asp" ? 0 : clock;
  ASSIGN_OR_RETURN(PsClient::Ticket t, client_->Pull(keys_->all(), model_->params().data(), want));
  return client_->Wait(t, kWaitDeadline);
}

Status Worker::RunEpoch(int epoch, int64_t first_clock, int64_t steps) {
  const JobConfig& c = a_.config;
  const auto epoch_start = Clock::now();
  const HandoutKind kind = c.data.handout == "static" ? HandoutKind::kStatic : HandoutKind::kGlobal;
  const HandoutPlan plan =
      HandoutPlan::Make(kind, c.seed, epoch, data_.train.count, c.batch_size,
                        static_cast<int>(a_.workers.size()), c.data.shard_weights);
  if (plan.steps() != steps) {
    return Internal("the coordinator planned " + std::to_string(steps) + " steps, this worker " +
                    std::to_string(plan.steps()));
  }
  const bool bsp = c.cluster.consistency == "bsp";
  clock_ = first_clock;
  double loss_sum = 0, compute = 0, push_wait = 0, pull_wait = 0;
  int64_t correct = 0, done = 0;
  uint64_t hash = 0;
  auto last_progress = Clock::now();
  auto last_idle = Clock::now();
  for (int64_t k = 0; k < steps; ++k, ++clock_) {
    auto t0 = Clock::now();
    for (PsClient::Ticket p : pushes_) RETURN_IF_ERROR(client_->Wait(p, kWaitDeadline));
    pushes_.clear();
    RETURN_IF_ERROR(client_->WaitBuffersReleased(kWaitDeadline));
    auto t1 = Clock::now();
    push_wait += Seconds(t1 - t0);
    RETURN_IF_ERROR(PullAll(clock_));
    auto t2 = Clock::now();
    pull_wait += Seconds(t2 - t1);

    const std::span<const uint32_t> mine = plan.Samples(my_index_, k);
    const int n = static_cast<int>(mine.size());
    const float lr = ScheduledLearningRate(c.schedule, c.optimizer.lr,
                                           epoch + static_cast<double>(k) / steps, c.epochs);
    if (n == 0) {
      ASSIGN_OR_RETURN(PsClient::Ticket p, client_->PushEmpty(clock_));
      pushes_.push_back(p);
      continue;
    }
    for (int i = 0; i < n; ++i) {
      std::memcpy(input_.data() + static_cast<size_t>(i) * a_.input_dim, data_.train.row(mine[i]),
                  a_.input_dim * sizeof(float));
      labels_[i] = data_.train.labels[mine[i]];
      hash += Mix64(mine[i]);
    }
    // BSP sums the workers' gradients: scale each by the whole step's size
    // so the sum is the mean over the global batch.
    const float scale = 1.0f / static_cast<float>(bsp ? plan.StepTotal(k) : n);
    Status push_status;
    LossResult l =
        model_->TrainStep(input_.data(), labels_.data(), n, scale, [&](int first, int last) {
          if (!push_status.ok()) return;
          const TensorLayout& layout = model_->layout();
          const KeyRange range = keys_->Covering(layout[first].offset,
                                                 layout[last - 1].offset + layout[last - 1].size);
          StatusOr<PsClient::Ticket> p =
              client_->Push(range, model_->grads().data(), clock_, lr, n);
          if (p.ok()) {
            pushes_.push_back(*p);
          } else {
            push_status = p.status();
          }
        });
    RETURN_IF_ERROR(push_status);
    compute += Seconds(Clock::now() - t2);
    loss_sum += l.loss_sum;
    correct += l.correct;
    done += n;
    if (Clock::now() - last_idle > std::chrono::milliseconds(100)) {
      last_idle = Clock::now();
      RETURN_IF_ERROR(Idle());
    }
    if (Clock::now() - last_progress > std::chrono::milliseconds(500)) {
      last_progress = Clock::now();
      capnp::MallocMessageBuilder m;
      auto p = m.initRoot<msg::Control>().initProgress();
      p.setNodeId(a_.node_id);
      p.setEpoch(epoch);
      p.setSamples(done);
      p.setLossSum(loss_sum);
      RETURN_IF_ERROR(control_->Send(m));
    }
  }
  auto t0 = Clock::now();
  for (PsClient::Ticket p : pushes_) RETURN_IF_ERROR(client_->Wait(p, kWaitDeadline));
  pushes_.clear();
  push_wait += Seconds(Clock::now() - t0);
  capnp::MallocMessageBuilder m;
  auto d = m.initRoot<msg::Control>().initEpochDone();
  d.setNodeId(a_.node_id);
  d.setEpoch(epoch);
  d.setSamples(done);
  d.setLossSum(loss_sum);
  d.setCorrect(correct);
  d.setSampleHash(hash);
  d.setComputeSeconds(compute);
  d.setPushWaitSeconds(push_wait);
  d.setPullWaitSeconds(pull_wait);
  PSTRAIN_LOG(DEBUG) << "epoch " << epoch + 1 << ": " << done << " samples in "
                     << Seconds(Clock::now() - epoch_start) << " s";
  return control_->Send(m);
}

Status Worker::Evaluate(int epoch, int64_t begin, int64_t end) {
  RETURN_IF_ERROR(PullAll(clock_));
  const EvalResult r = EvaluateRange(*model_, data_.test, begin, end);
  capnp::MallocMessageBuilder m;
  auto d = m.initRoot<msg::Control>().initEvalDone();
  d.setNodeId(a_.node_id);
  d.setEpoch(epoch);
  d.setLossSum(r.loss_sum);
  d.setCorrect(r.correct);
  d.setCount(r.count);
  return control_->Send(m);
}

}  // namespace

Status RunWorker(const WorkerOptions& options, const std::atomic<bool>* stop, int* exit_code) {
  ZmqContext ctx;
  Worker worker(ctx, options, stop);
  return worker.Run(exit_code);
}

}  // namespace pstrain
