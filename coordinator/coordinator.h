// The coordinator: registers the nodes, assigns key ranges to servers and
// the hand-out order to workers, runs the epochs (start, progress, end,
// evaluation on the test set split across workers), checks that every
// sample was processed exactly once per epoch, watches heartbeats, writes
// the metrics and the terminal output, and ends the job.
//
// One thread runs it: a loop over its ROUTER socket with deadlines. Nodes
// talk to it only through that socket. With output.http_port set it also
// serves its state over HTTP (status_board.h): that server has a thread of
// its own and sees only copies of the state, published by the loop.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/ckpt/checkpoint.h"
#include "common/job/config.h"
#include "common/job/training_stats.h"
#include "common/msg/codec.h"
#include "common/net/node.h"
#include "common/net/zmq_socket.h"
#include "coordinator/console.h"
#include "coordinator/control_rules.h"
#include "coordinator/http_server.h"
#include "coordinator/metrics_log.h"
#include "coordinator/status_board.h"
#include "coordinator/work_book.h"

namespace pstrain {

class Model;

struct CoordinatorOptions {
  JobConfig config;
  std::string job_text;  // the job file's text, sent to every node
  std::string job_name;  // its path as given
  std::string base_dir;  // where relative paths in it point
  std::vector<ConfigOverride> overrides;
  std::string bind_address = "127.0.0.1";
  int port = 0;         // the control port to bind (0: a free one)
  bool resume = false;  // continue from the newest valid checkpoint
  // Not empty: the job was started by pstrain's launcher (or mpirun), which
  // gave its nodes this token; while the job starts, a registration without
  // it is refused, so a stranger cannot take a place meant for them.
  std::string launch_token;
};

class Coordinator {
 public:
  Coordinator(ZmqContext& ctx, CoordinatorOptions options, Console* console, MetricsLog* metrics);
  ~Coordinator();

  // Binds the control socket (and, with output.http_port, starts the HTTP
  // status server); returns the endpoint nodes join.
  StatusOr<std::string> Bind();
  // The HTTP status server's port; 0 when there is none.
  int http_port() const { return http_ ? http_->port() : 0; }
  // Runs the job to its end. On an error or *stop, nodes are told to exit.
  StatusOr<FinalStats> Run(const std::atomic<bool>* stop);

  // A coordinator restarted (--resume) at its job's address, before any
  // node is started: the servers and workers that outlived the one before
  // offer themselves (Rejoin) within `window`. True when every one of the
  // job's nodes did and all are taken back with their state: Run then
  // carries on from where they are, and nothing is to be started. False
  // when none did; when only some did, they are told to exit (the job
  // starts again from its newest checkpoint) and false.
  StatusOr<bool> AdoptSurvivors(std::chrono::milliseconds window, const std::atomic<bool>* stop);

  // Optional: called every loop; returns the pids of node processes known to
  // have exited (the local launcher reaps its children), so their death is
  // handled at once instead of after the heartbeat timeout.
  void SetExitedPidsProbe(std::function<std::vector<int>()> probe) { probe_ = std::move(probe); }
  // Optional: told of every node the coordinator declares dead (role, id,
  // pid), after its work went to the others; the local launcher starts a
  // worker again in the place of one it did not start itself (a node taken
  // back from a coordinator before, see AdoptSurvivors).
  void SetDeathObserver(std::function<void(msg::Role, int, int)> f) {
    death_observer_ = std::move(f);
  }
  // Pids of the nodes started by the launcher that the coordinator declared
  // dead or dropped (their exit status is not the job's).
  const std::vector<int>& dead_pids() const { return dead_pids_; }

 private:
  struct Node {
    std::string identity;  // ROUTER routing id
    msg::Role role;
    int id = -1;
    uint64_t incarnation = 0;
    int pid = 0;
    std::string host;
    std::string endpoint;
    std::string local_endpoint, host_key;  // servers: ipc:// for nodes on the same host
    bool ready = false;
    // Started by this job's launcher (it holds the launch token): only such
    // a node's pid is the launcher's child. Any other node's pid is what it
    // claims, and is never matched against processes here.
    bool launched = false;
    std::chrono::steady_clock::time_point registered;  // when its Register came
    std::chrono::steady_clock::time_point last_seen;
    int unreachable = 0;  // heartbeats in a row its connection refused
    bool beats = false;   // it has sent heartbeats (before Ready too)
  };
  // Why a node is judged dead (causes: liveness.h).
  struct Verdict {
    const char* cause;
    std::string why;
    double detect_seconds;
  };
  using Handler = std::function<Status(Node& from, msg::Control::Reader c)>;
  // What one worker reported at the end of its share of an epoch.
  struct WorkerEpoch {
    int64_t samples = 0;
    double loss = 0;
    int64_t correct = 0;
    double compute = 0, push = 0, pull = 0;
    int64_t peak_rss = -1;
  };

  Status SendTo(const Node& n, capnp::MessageBuilder& m);
  // Forgets node n: its metrics line (`event`: node_failed or node_dropped;
  // detect_seconds < 0: none; cause: liveness.h, or null), a Shutdown for it if it speaks again,
  // its pid among the dead. Returns it.
  StatusOr<Node> Forget(const Node& n, const char* event, const std::string& reason,
                        double detect_seconds, const char* cause);
  // Records a death (log, metrics event) and forgets the node; returns it.
  StatusOr<Node> Bury(const Node& dead, const Verdict& v);
  // A server died: promote the backups of its ranges, tell everyone.
  Status OnServerDeath(const Node& dead, const Verdict& v);
  std::vector<ServerEntry> ServerTable();
  // What a job that cannot go on can do: resume from which checkpoint, or
  // start over.
  std::string ResumeAdvice() const;
  // A worker that joined a running job and never became ready (it died, or
  // cluster.start_timeout_s passed): forgotten, its place free again.
  Status DropUnready(const Node& n, const std::string& why);
  // A worker died: drop it, hand its slots to the survivors, tell everyone.
  Status OnWorkerDeath(const Node& dead, const Verdict& v);
  // The data's shape and sizes (once).
  Status LoadData();
  // Builds the model: its tensors for manifests, its key ranges; the
  // status page's sizes.
  StatusOr<std::vector<KeyRange>> PlanModel();
  // AdoptSurvivors, once every node's state is in: ranges, owners, the
  // epoch to carry on with.
  struct NodeOffer;
  Status TakeBack(const std::vector<NodeOffer>& offers);
  Status BroadcastMembership();
  // The server table (a new membership epoch) to every node.
  Status BroadcastRouting();
  // A server that joined a running job is ready: it becomes the backup of
  // every range that has none, and the primaries send it their state.
  Status ReReplicate(const Node& server);
  Status OnReplicaReady(const Node& n, msg::ReplicaReady::Reader r);
  std::vector<Node*> LiveWorkers();  // ready workers, by id
  std::vector<int> LiveWorkerIds();
  double SinceStart() const;
  // Seconds from `t` to now.
  static double Since(std::chrono::steady_clock::time_point t);
  void ShutdownAll(int code, const std::string& reason);
  // Receives for up to `timeout`, answering heartbeats and handing other
  // messages from registered nodes to `handler`; checks liveness.
  Status Pump(std::chrono::milliseconds timeout, const Handler& handler);
  // The parts of Pump: every message waiting (registrations, heartbeats,
  // readiness and acknowledgements here, the rest to `handler`); the
  // heartbeats due; deaths (an exited process, a closed connection, a
  // silence past cluster.timeout_ms) and their recovery; the end of a
  // recovery, once every survivor acknowledged the new membership.
  Status ReceiveAll(const Handler& handler);
  Status SendHeartbeats(std::chrono::steady_clock::time_point now);
  Status DetectDeaths(std::chrono::steady_clock::time_point now);
  // Whether n is dead, and why; `exited`: the launcher's children that exited.
  std::optional<Verdict> Judge(const Node& n, std::chrono::steady_clock::time_point now,
                               const std::vector<int>& exited) const;
  Status CheckRecovered();
  // A heartbeat said how long n's main thread has been busy (status page).
  void NoteBusy(const Node& n, uint32_t compute_idle_ms);
  Status OnRegister(const std::string& identity, msg::Register::Reader r);
  // A control message that is not accepted: one log line naming the peer
  // (rate-limited), an `error` reply to it, and the refusal counted.
  void Refuse(const std::string& identity, const std::string& peer, const std::string& why);
  Status WaitUntil(const std::function<bool()>& done, const std::string& what,
                   std::chrono::seconds deadline, const Handler& handler);
  Status Register();
  Status Assign();
  // The key range of each server (checking what replication can carry).
  StatusOr<std::vector<KeyRange>> PlanKeyRanges(const Model& model) const;
  // The "membership" line of the metrics file: every server and worker.
  Status WriteMembershipEvent();
  // One epoch: training, the check that every sample was applied once,
  // evaluation.
  StatusOr<EpochStats> RunEpoch(int epoch);
  // Hands the epoch's slots out and waits for every worker's report, summed
  // per worker into `done`; returns the epoch's steps.
  StatusOr<int64_t> TrainEpoch(int epoch, std::map<int, WorkerEpoch>* done);
  EpochStats SummariseTraining(int epoch, const std::map<int, WorkerEpoch>& done) const;
  // Every server must have applied every sample of the epoch's `steps`
  // (from clock_) exactly once: e->samples and e->sample_set_ok say so.
  Status CheckSampleSet(int64_t first_clock, int64_t steps, EpochStats* e);
  // The test set split over the live workers, gathered into e's test figures.
  Status EvaluateEpoch(int epoch, EpochStats* e);
  // The run's end: the weights' L2 norm and digest from the servers' sums
  // (checking the digest covers every block), and each server's counters
  // into the metrics file.
  Status GatherFinalStats(FinalStats* f);
  // Asks every server to save its ranges into a new checkpoint folder, then
  // writes the manifest that makes the checkpoint count.
  Status WriteCheckpoint(int epochs_done);
  // The manifest's fields every checkpoint has, and the job copy written
  // into `folder`.
  StatusOr<Manifest> StartManifest(const std::string& folder, int epochs_done, int64_t step);
  // checkpoint.every_steps: asks every server for a cut at each such step of
  // the epoch running (after current_.first_step).
  Status ScheduleCuts();
  // Asks every server for a cut after `step` of the epoch running.
  Status ScheduleCut(int64_t step, bool timed);
  // checkpoint.every_seconds: once that long has passed since the last
  // checkpoint, a cut a little ahead of the workers (as far as they said,
  // and how fast they go).
  Status MaybeTimedCut(std::chrono::steady_clock::time_point epoch_start);
  // A server's CheckpointDone for a cut; the checkpoint's manifest once
  // every server has written its part.
  Status OnCutDone(const Node& n, msg::CheckpointDone::Reader d);
  // A server died: the cuts waiting for it will not complete.
  Status AbandonCuts(int server, const std::string& why);
  // Asks every server for its StatsReply (samples of clocks [begin, end)).
  Status RequestStats(uint64_t token, int64_t clock_begin, int64_t clock_end);
  // Finds the checkpoint to resume from (reporting the ones skipped).
  StatusOr<Manifest> PickCheckpoint();
  std::vector<Node*> NodesOf(msg::Role role);

  // The HTTP status server and what it shows (coordinator_report.cc).
  Status StartStatusServer();
  void PublishMembership();
  void PublishPhase(const std::string& phase, int epoch);
  // Progress of the epoch running: samples and summed loss per worker.
  void PublishProgress(const std::map<int, std::pair<int64_t, double>>& progress, int64_t total,
                       double elapsed);
  void PublishEpoch(const EpochStats& e, const std::map<int, WorkerEpoch>& done);
  // Per-worker throughput and failures for the final report.
  void AddRunTotals(FinalStats& f) const;

  ZmqContext& ctx_;
  CoordinatorOptions options_;
  Console* console_;
  MetricsLog* metrics_;
  const std::atomic<bool>* stop_ = nullptr;
  std::unique_ptr<Socket> socket_;
  std::string endpoint_;
  std::map<std::string, Node> nodes_;  // by routing id
  int input_dim_ = 0, num_classes_ = 0;
  ImageShape input_shape_;
  int64_t train_count_ = 0, test_count_ = 0;
  std::vector<uint8_t> test_labels_;  // for the AUC of binary models
  uint64_t membership_epoch_ = 1;
  int64_t clock_ = 0;
  std::string restore_dir_;  // checkpoint folder the servers start from
  bool monitoring_ = false;  // liveness is checked once every node is ready
  std::chrono::steady_clock::time_point last_heartbeat_{};
  std::chrono::steady_clock::time_point last_judged_{};  // DetectDeaths' last turn
  std::chrono::steady_clock::time_point run_start_{};
  std::function<std::vector<int>()> probe_;
  std::function<void(msg::Role, int, int)> death_observer_;
  std::vector<int> dead_pids_;
  std::map<std::string, std::string> dead_;  // routing id -> why, for late messages
  std::vector<KeyRange> ranges_;             // the key ranges, in key order
  std::vector<ManifestTensor> tensors_;      // the model's layout, for checkpoints
  std::vector<int> primary_, backup_;        // server id per range (-1: none)
  // Per range: the backup holds the primary's state (ReplicaReady) and can
  // be promoted; and when a backup started to copy it (re-replication).
  std::vector<bool> backup_ready_;
  std::map<size_t, std::chrono::steady_clock::time_point> copying_;
  // Recovery in progress: survivors that have not acknowledged the new
  // membership yet, and what failed.
  std::map<int, bool> pending_acks_;
  std::chrono::steady_clock::time_point recovery_start_{};
  std::string recovering_;       // "worker 2"
  std::string recovering_role_;  // "worker" | "server"
  int failures_ = 0;
  // The epoch running (epoch -1: none).
  struct EpochState {
    int epoch = -1;
    int64_t first_clock = 0, steps = 0;
    int64_t first_step = 0;  // above 0: resumed from a cut within the epoch
  } current_;
  int64_t resume_step_ = 0;  // the first epoch's first step (--resume from a cut)
  bool data_loaded_ = false;
  // Taken back from a coordinator before (AdoptSurvivors): the epoch to
  // carry on with (-1: none had started), its first clock and step, and the
  // slot owners the workers act on.
  struct Adoption {
    int epoch = -1;
    int64_t first_clock = 0, first_step = 0;
    std::vector<int> owners;
  };
  std::optional<Adoption> adoption_;
  // Checkpoints being taken while training goes on, by request token.
  struct Cut {
    int epochs_done = 0;
    int64_t step = 0, clock = 0;
    std::string folder;
    std::set<int> waiting;  // servers that have not answered
    std::vector<ManifestFile> files;
    std::string failed;        // not empty: it will not count, and why
    bool fatal = false;        // a server could not write it (a full disk)
    double write_seconds = 0;  // the slowest server's writer
    bool timed = false;        // asked for by checkpoint.every_seconds
  };
  std::map<uint64_t, Cut> cuts_;
  uint64_t next_cut_ = 1;
  std::chrono::steady_clock::time_point last_checkpoint_{};  // or the run's start
  int64_t progress_steps_ = 0;  // the most steps of the epoch a worker said it had done
  int timed_misses_ = 0;        // timed cuts in a row the servers were past already
  // Who owns each slot, who has still to report, who holds which test rows.
  WorkBook book_{0};
  // Starts the current epoch on worker n: every slot it owns, or just
  // `only` when not empty (slots it takes over from a dead worker).
  // `from`: per slot, the first step its owner computes (empty: the
  // epoch's first step).
  Status SendStartEpoch(const Node& n, const std::vector<int>& only,
                        const std::vector<int64_t>& from = {});
  // A worker that joined while the epoch trains (WorkBook::WorkerJoined),
  // waiting for the givers of its slots to say where each goes over.
  struct Handover {
    int joiner = -1;
    uint64_t membership_epoch = 0;
    std::map<int, int> giver;     // slot -> the worker it comes from, until that one said
    std::map<int, int64_t> from;  // slot -> the joiner's first step of it
    std::chrono::steady_clock::time_point start{};
  };
  std::optional<Handover> handover_;
  // Worker `joiner` became ready while the epoch trains: it takes its share
  // of the slots from the next step of their givers on.
  Status StartHandover(const Node& joiner);
  // A giver acknowledged a membership: where the slots it lost go over.
  Status OnReleased(const Node& n, msg::MembershipAck::Reader ack);
  // Every giver said: the joiner starts the epoch where they stopped.
  Status CheckHandover();
  // Asks worker n to evaluate test rows [begin, end) of the current epoch.
  Status SendEvaluate(const Node& n, int64_t begin, int64_t end);
  // Refused control messages, and the rate limit of their log lines.
  int64_t refused_ = 0;
  LogLimiter refusal_log_{20, std::chrono::seconds(1)};
  StatusBoard board_;
  std::unique_ptr<HttpServer> http_;  // after board_: stopped before it goes
};

}  // namespace pstrain
