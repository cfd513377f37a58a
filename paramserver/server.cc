#include "paramserver/server.h"

#include <capnp/message.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "common/base/buffer_pool.h"
#include "common/base/logging.h"
#include "common/base/refusal_log.h"
#include "common/data/job_data.h"
#include "common/msg/codec.h"
#include "common/net/node.h"
#include "common/nn/blas.h"
#include "common/nn/model.h"
#include "common/ps/compress.h"
#include "common/ps/sparse_table.h"
#include "paramserver/admission.h"
#include "paramserver/checkpoint_files.h"
#include "paramserver/cut_writer.h"
#include "paramserver/dense_shard.h"
#include "paramserver/pull_queue.h"
#include "paramserver/push_payload.h"
#include "paramserver/range_shard.h"
#include "paramserver/routing_plan.h"
#include "paramserver/row_bucket.h"
#include "paramserver/row_tables.h"
#include "paramserver/shard_stats.h"

namespace pstrain {
namespace {

// Pulls one worker may have waiting here beyond two per piece (PullQueue).
constexpr int kMaxWaitingPullsPerWorker = 64;
// Requests waiting for a server table on its way (Server::ShouldDefer).
constexpr size_t kMaxDeferred = 4096;
constexpr auto kMaxDeferral = std::chrono::seconds(10);

class Server {
 public:
  Server(ZmqContext& ctx, const ServerOptions& o) : ctx_(ctx), options_(o) {}
  ~Server() {
    data_.reset();  // closes the ipc:// listener, which removes its socket file
    if (!ipc_dir_.empty()) {
      ::unlink((ipc_dir_ + "/data").c_str());
      ::rmdir(ipc_dir_.c_str());
    }
  }

  Status Run(const std::atomic<bool>* stop, int* exit_code);

 private:
  Status Setup(const NodeAssignment& a);
  // Adopts a server table: promotes replicas now owned, points each owned
  // range at its backup (or none), as PlanRouting says.
  Status ApplyRouting(const std::vector<ServerEntry>& servers);
  // A link to server `backup`, connected on first use.
  Status ConnectLink(const ServerEntry& backup);
  void Replicate(int to, DenseShard* shard, const DenseShard::Update& u);
  // A range's whole state to a server that becomes its backup, before the
  // updates that follow it.
  void SendReplicaState(int to, RangeShard& shard);
  // On the backup: a replicaState loaded into the replica of its keys.
  Status HandleReplicaState(Frame& peer, msg::DataHeader::Reader h, Message& frames);
  Status ReceiveAcks();
  Status HandleReplicate(Frame& peer, msg::DataHeader::Reader h, Message& frames);
  // Row buckets: a row push applied here, forwarded to the bucket's backup
  // (its reply held until the backup has applied it too).
  void ReplicateRows(int to, msg::DataHeader::Reader h, const Frame& payload, Frame& peer);
  void SendRowState(int to, const RowBucket& bucket);
  // The header of a message to another server (as this server, under its
  // routing epoch) about `keys`.
  msg::DataHeader::Builder ServerHeader(capnp::MessageBuilder& m, msg::DataOp op, uint64_t id,
                                        const KeyRange& keys);
  // A replicaState message: piece `piece` of `pieces` of `keys` (a range's
  // piece or a row bucket), its state `bytes` cut into payload frames.
  Message StateMessage(uint64_t id, const KeyRange& keys, const std::vector<uint8_t>& bytes,
                       int64_t version, int64_t piece, int32_t pieces);
  Status HandleReplicateRows(Frame& peer, msg::DataHeader::Reader h, Message& frames);
  // Answers the row pushes of `bucket` held for its backup's answer: the
  // backup changed (it died, or a new one gets the whole state first).
  void ReleaseHeldReplies(uint32_t bucket);
  RowBucket* FindBucket(const std::vector<std::unique_ptr<RowBucket>>& in, const KeyRange& r);
  // Every range and bucket this server serves (or backs up), for routing
  // and for a restarted coordinator.
  std::vector<KeyRange> Owned() const;
  std::vector<KeyRange> Backups() const;
  Status OnControl(msg::Control::Reader c);
  // The worker set of a new membership: requests from others are refused.
  Status ProcessMembership(msg::Membership::Reader mb);
  // Writes this server's ranges (and rows) into the folder the request
  // names, answering with the files written.
  Status ProcessCheckpoint(msg::CheckpointRequest::Reader req);
  // A cut (CheckpointRequest.cutClock): registered with every range, taken
  // as each reaches the clock, written by writer_.
  Status ProcessCut(msg::CheckpointRequest::Reader req);
  // Hands every cut that all ranges have taken to the writer, and answers
  // the coordinator for every cut the writer has finished.
  Status AdvanceCuts();
  Status SendCutMissed(uint64_t token, const std::string& why);
  // Answers with the sums, digest and sample counts the coordinator checks.
  Status ProcessStats(msg::StatsRequest::Reader req);
  void OnData(Message& frames);
  // A row request for a bucket this server backs up, routed by a newer
  // server table than this server has (one that promotes it): it waits,
  // and so does everything its sender sends after it, until that table
  // comes (or kMaxDeferral passes), so a worker's requests keep their order.
  bool ShouldDefer(msg::DataHeader::Reader h) const;
  // Handles the waiting requests again, in the order they came.
  void ReplayDeferred();
  // Handles one request; an error status becomes an error reply. Checks
  // the sender, then hands the request to its Process* method.
  Status HandleData(Frame& peer, msg::DataHeader::Reader h, Message& frames);
  // kAborted unless the sender is a live worker of the current membership;
  // kInvalidArgument when the header's frame count is not what came.
  Status CheckSender(msg::DataHeader::Reader h, const Message& frames) const;
  // A dense request's keys, the shard that serves them and the coding.
  struct DenseRequest {
    KeyRange keys;
    RangeShard* shard = nullptr;
    WireType wire = WireType::kFloat32;
  };
  StatusOr<DenseRequest> ParseDense(msg::DataHeader::Reader h);
  Status ProcessPull(Frame& peer, msg::DataHeader::Reader h, const Message& frames);
  Status ProcessPush(Frame& peer, msg::DataHeader::Reader h, Message& frames);
  // A row request's bucket (kept here as primary, or in `in`) and table
  // (made on first use); its rows, checked to be the bucket's, into
  // row_ids_.
  StatusOr<std::pair<RowBucket*, SparseTable*>> TableFor(
      msg::DataHeader::Reader h, const std::vector<std::unique_ptr<RowBucket>>& in);
  Status ProcessRowPull(Frame& peer, msg::DataHeader::Reader h, const Message& frames);
  Status ProcessRowPush(Frame& peer, msg::DataHeader::Reader h, const Message& frames);
  RangeShard* FindShard(const KeyRange& r);
  void Reply(Frame& peer, uint64_t request_id, Message payload);
  void ReplyError(Frame& peer, uint64_t request_id, const Status& why);
  void ServeReadyPulls();
  void ServePull(PendingPull& p);

  ZmqContext& ctx_;
  ServerOptions options_;
  std::unique_ptr<Socket> data_;
  std::string ipc_dir_;  // holds the data socket's ipc:// file
  std::unique_ptr<ControlChannel> control_;
  NodeAssignment assignment_;
  std::unique_ptr<KeyLayout> keys_;
  std::vector<std::unique_ptr<RangeShard>> shards_;    // ranges this server owns
  std::vector<std::unique_ptr<RangeShard>> replicas_;  // backups of other servers' ranges
  std::vector<ServerEntry> servers_;                   // the current server table
  std::map<int, std::unique_ptr<Socket>> links_;       // to backups, by server id
  std::map<int, uint64_t> link_incarnation_;           // whom each link reaches
  std::map<uint64_t, std::pair<DenseShard*, int64_t>> replicating_;  // unacknowledged
  std::map<uint64_t, int> backup_of_;  // owned range (by its first key) -> its backup's id
  uint64_t next_replicate_ = 1;
  uint64_t incarnation_ = 0;
  std::vector<float> scratch_;
  VectorPool<float> decoded_;  // compressed pushes, decoded, held until applied
  // Sparse models: the row buckets this server serves, and backs up.
  std::vector<std::unique_ptr<RowBucket>> buckets_;
  std::vector<std::unique_ptr<RowBucket>> row_replicas_;
  // Bucket -> its backup's id and incarnation (sent its state).
  std::map<uint32_t, std::pair<int, uint64_t>> bucket_backup_;
  struct HeldReply {
    Frame peer;
    uint64_t request_id = 0;
    uint32_t bucket = 0;
  };
  std::map<uint64_t, HeldReply> held_replies_;  // by replicateRows request id
  struct Deferred {
    Message frames;
    std::chrono::steady_clock::time_point since;
  };
  std::deque<Deferred> deferred_;
  std::set<std::string> deferred_peers_;
  bool replaying_ = false;
  std::vector<float> row_scratch_;  // a row push's gradients, aligned
  std::vector<uint64_t> row_ids_;   // the rows a request names
  VectorPool<float> row_replies_;   // row pull replies in flight
  Admission admission_;             // who may send requests; which pushes are new
  PullQueue pulls_{kMaxWaitingPullsPerWorker};
  bool done_ = false;
  int exit_code_ = 0;
  int64_t bad_messages_ = 0;
  LogLimiter refusal_log_{20, std::chrono::seconds(1)};  // lines about refused requests
  int64_t refused_ = 0;
  int64_t nonfinite_ = 0;  // pushes refused for NaN/Inf
  std::chrono::steady_clock::time_point last_wait_log_{};
  struct PendingCut {
    uint64_t token = 0;
    std::string dir;
  };
  std::map<int64_t, PendingCut> cuts_;                    // by clock: asked for, not all taken yet
  std::unique_ptr<CutWriter> writer_;                     // made at the first cut
  std::pair<int64_t, int64_t> last_stats_range_{-1, -1};  // clocks last counted
  ShardStats last_stats_;                                 // and what they held
};

Status Server::Run(const std::atomic<bool>* stop, int* exit_code) {
  // Bounded per peer: frames up to kMaxDataFrameBytes (a bigger length
  // header drops the connection), 16 unread messages in, 8192 replies out.
  // A worker pulls a clock's weights piece by piece (128 KiB pieces) and
  // may have two clocks in flight, so the reply bound must cover twice the
  // pieces a server holds: 8192 serves up to about 130M parameters a
  // server. A reply shares its snapshot of the weights (no copy), so what
  // a peer that stops reading can pin is bounded by it too. (With 256, a
  // 100M-parameter model lost most replies to a full queue, and every
  // step waited for resends.)
  SocketOptions data_options;
  data_options.max_message_bytes = static_cast<int64_t>(kMaxDataFrameBytes);
  data_options.recv_hwm = 16;
  data_options.send_hwm = 8192;
  ASSIGN_OR_RETURN(data_, Socket::Create(ctx_, SocketKind::kRouter, data_options));
  ASSIGN_OR_RETURN(std::string endpoint, data_->Bind(TcpWildcardEndpoint(options_.bind_address)));
  // The same socket for nodes on this host, as a Unix socket in a folder
  // only this user can enter.
  std::string local;
  char dir[] = "/tmp/pstrain-XXXXXX";
  if (::mkdtemp(dir) != nullptr) {
    ipc_dir_ = dir;
    StatusOr<std::string> bound = data_->Bind("ipc://" + ipc_dir_ + "/data");
    if (bound.ok()) {
      local = *bound;
    } else {
      PSTRAIN_LOG(WARNING) << "no ipc:// socket for local workers: " << bound.status().message();
    }
  }
  ASSIGN_OR_RETURN(control_, ControlChannel::Connect(ctx_, options_.coordinator));
  control_->set_launch_token(options_.launch_token);
  incarnation_ = NewIncarnation();
  ASSIGN_OR_RETURN(NodeAssignment a,
                   control_->Join(msg::Role::SERVER, options_.requested_id, incarnation_, endpoint,
                                  std::chrono::seconds(600), local, stop));
  RETURN_IF_ERROR(Setup(a));
  SetLogPrefix("server " + std::to_string(a.node_id));
  PSTRAIN_LOG(INFO) << "serving " << shards_.size() << " key range(s) at " << endpoint;
  {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<msg::Control>().initReady();
    r.setNodeId(a.node_id);
    RETURN_IF_ERROR(control_->Send(m));
  }
  while (!done_) {
    if (stop != nullptr && stop->load()) return Cancelled("server stopped by a signal");
    std::vector<Socket*> polled = {control_->socket(), data_.get()};
    for (auto& [id, link] : links_) polled.push_back(link.get());
    ASSIGN_OR_RETURN(std::vector<bool> ready, PollReadable(polled, std::chrono::milliseconds(50)));
    if (std::find(ready.begin() + 2, ready.end(), true) != ready.end()) {
      RETURN_IF_ERROR(ReceiveAcks());
      ServeReadyPulls();
    }
    if (ready[1]) {
      // Serve a bounded batch of data messages, then look at control again.
      for (int i = 0; i < 256; ++i) {
        Message frames;
        StatusOr<bool> got = data_->Recv(&frames, 8);
        if (!got.ok()) {
          if (got.status().code() != StatusCode::kInvalidArgument) return got.status();
          ++bad_messages_;
          PSTRAIN_LOG(WARNING) << "dropped a data message: " << got.status().message();
          continue;
        }
        if (!*got) break;
        OnData(frames);
      }
      ServeReadyPulls();
    }
    RETURN_IF_ERROR(control_->Drain([&](msg::Control::Reader c) { return OnControl(c); }));
    RETURN_IF_ERROR(AdvanceCuts());
    if (!deferred_.empty() &&
        std::chrono::steady_clock::now() - deferred_.front().since > kMaxDeferral) {
      PSTRAIN_LOG(WARNING) << deferred_.size() << " request(s) waited "
                           << std::chrono::duration_cast<std::chrono::seconds>(kMaxDeferral).count()
                           << " s for a server table that did not come; handled now";
      ReplayDeferred();
    }
    RETURN_IF_ERROR(control_->Tick());
    const auto now = std::chrono::steady_clock::now();
    if (!pulls_.empty() && now - pulls_.oldest().since > std::chrono::seconds(10) &&
        now - last_wait_log_ > std::chrono::seconds(10)) {
      last_wait_log_ = now;
      const PendingPull& p = pulls_.oldest();
      PSTRAIN_LOG(INFO) << pulls_.size() << " pull(s) waiting; "
                        << p.shard->Waiting(p.keys, p.clock);
    }
  }
  *exit_code = exit_code_;
  return OkStatus();
}

Status Server::Setup(const NodeAssignment& a) {
  assignment_ = a;
  const JobConfig& c = a.config;
  SetBlasThreads(1);
  FlushDenormalsToZero();
  // The same initial weights as a standalone run: build the model and take
  // this server's ranges out of it.
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                   Model::Build(c.layers, a.input_dim, a.num_classes, 1, a.input_shape,
                                SparseOptionsOf(c, nullptr)));
  model->InitParams(c.seed);
  if (!c.init_from.empty() && a.restore_dir.empty()) {
    // Fine-tuning: another job's weights where the names match (a resumed
    // job has its own checkpoint's).
    if (model->sparse()) {
      return InvalidArgument(
          "model.init_from: sparse models keep embedding rows that it does "
          "not carry over");
    }
    ASSIGN_OR_RETURN(
        const std::string taken,
        InitFromCheckpoint(c.init_from, model->layout(), model->params(), c.init_from_partial));
    if (a.node_id == 0) PSTRAIN_LOG(WARNING) << taken;
  }
  keys_ = std::make_unique<KeyLayout>(model->layout());
  ShardOptions so;
  so.consistency = c.cluster.consistency;
  so.staleness = c.cluster.staleness;
  so.slots = c.cluster.workers;
  so.optimizer = c.optimizer;
  // BSP with overlap: each range cut into pieces applied and served on
  // their own (a backup cuts its replicas alike).
  const bool cut = c.cluster.overlap && so.consistency == Consistency::kBsp;
  std::optional<Manifest> restore;  // read once a range needs it
  for (const ServerEntry& s : a.servers) {
    if (s.id != a.node_id) continue;
    for (const KeyRange& r : s.ranges) {
      if (IsRowBucket(r)) {
        if (RowBucketOf(r) >= static_cast<uint32_t>(c.cluster.servers)) {
          return InvalidArgument("assigned row bucket " + ToString(r) + " of " +
                                 std::to_string(c.cluster.servers));
        }
        buckets_.push_back(std::make_unique<RowBucket>(RowBucketOf(r), c.optimizer, c.seed));
        if (a.restore_dir.empty()) continue;
        if (!restore.has_value()) {
          ASSIGN_OR_RETURN(Manifest m, ReadManifest(a.restore_dir));
          restore = std::move(m);
        }
        // The bucket's file; a checkpoint from before buckets holds server
        // N's rows, which were bucket N's, in a file of its own name.
        StatusOr<ManifestFile> file = FileForKeys(*restore, r.begin, r.end);
        if (!file.ok()) {
          const std::string legacy = SparseFileName(static_cast<int>(RowBucketOf(r)));
          auto it = std::find_if(restore->files.begin(), restore->files.end(),
                                 [&](const ManifestFile& f) { return f.name == legacy; });
          const bool bucketed =
              std::any_of(restore->files.begin(), restore->files.end(), [](const ManifestFile& f) {
                return IsRowBucket({f.key_begin, f.key_end});
              });
          if (bucketed) {
            return DataLoss(a.restore_dir + ": the manifest lists no file for row bucket " +
                            std::to_string(RowBucketOf(r)));
          }
          if (it == restore->files.end()) continue;  // the server had no rows
          file = *it;
        }
        RETURN_IF_ERROR(VerifyCheckpointFile(a.restore_dir, *file));
        const std::string path = a.restore_dir + "/" + file->name;
        ASSIGN_OR_RETURN(BinaryReader reader, BinaryReader::OpenFile(path));
        RETURN_IF_ERROR(buckets_.back()->LoadRows(reader).WithContext(path));
        size_t rows = 0;
        for (const auto& [id, t] : buckets_.back()->tables().tables()) rows += t.row_count();
        PSTRAIN_LOG(INFO) << "restored " << rows << " rows of bucket " << RowBucketOf(r) << " from "
                          << path;
        continue;
      }
      if (!keys_->IsValidRange(r)) {
        return InvalidArgument("assigned key range " + ToString(r) + " is not a valid range");
      }
      const FlatRange f = keys_->Flat(r);
      shards_.push_back(std::make_unique<RangeShard>(
          *keys_, r, std::span<const float>(model->params().data() + f.begin, f.size()), so, cut));
      if (!a.restore_dir.empty()) {
        // The file the manifest lists for the range, whichever server wrote
        // it (after a failover, the promoted backup).
        if (!restore.has_value()) {
          ASSIGN_OR_RETURN(Manifest m, ReadManifest(a.restore_dir));
          restore = std::move(m);
        }
        ASSIGN_OR_RETURN(const ManifestFile file, FileForKeys(*restore, r.begin, r.end));
        RETURN_IF_ERROR(VerifyCheckpointFile(a.restore_dir, file));
        const std::string path = a.restore_dir + "/" + file.name;
        ASSIGN_OR_RETURN(BinaryReader reader, BinaryReader::OpenFile(path));
        RETURN_IF_ERROR(shards_.back()->Load(reader));
        const int64_t clock = shards_.back()->pieces().front()->version();
        if (file.clock >= 0 && clock != file.clock) {
          return DataLoss(path + ": holds clock " + std::to_string(clock) + ", its manifest says " +
                          std::to_string(file.clock));
        }
        PSTRAIN_LOG(INFO) << "restored keys " << ToString(r) << " at clock " << clock << " from "
                          << path;
      }
    }
  }
  for (const ServerEntry& s : a.servers) {
    if (s.id != a.node_id) continue;
    for (const KeyRange& r : s.backup_ranges) {
      if (IsRowBucket(r)) {
        row_replicas_.push_back(std::make_unique<RowBucket>(RowBucketOf(r), c.optimizer, c.seed));
        continue;
      }
      if (!keys_->IsValidRange(r)) return InvalidArgument("bad backup range " + ToString(r));
      const FlatRange f = keys_->Flat(r);
      replicas_.push_back(std::make_unique<RangeShard>(
          *keys_, r, std::span<const float>(model->params().data() + f.begin, f.size()), so, cut));
    }
  }
  RETURN_IF_ERROR(admission_.SetMembership(a.workers, a.worker_incarnations, a.membership_epoch));
  admission_.set_routing_epoch(a.membership_epoch);
  return ApplyRouting(a.servers);
}

Status Server::ApplyRouting(const std::vector<ServerEntry>& servers) {
  servers_ = servers;
  // Cuts asked for under the old routing are not taken: a range may change
  // hands meanwhile. The coordinator asks again.
  for (const auto& [clock, cut] : cuts_) {
    RETURN_IF_ERROR(SendCutMissed(cut.token, "the server's key ranges changed"));
  }
  cuts_.clear();
  for (const auto& shard : shards_) shard->ClearCuts();
  for (const auto& replica : replicas_) replica->ClearCuts();
  ASSIGN_OR_RETURN(const RoutingPlan plan,
                   PlanRouting(assignment_.node_id, servers, Owned(), Backups()));
  for (const KeyRange& r : plan.promote) {
    if (IsRowBucket(r)) {
      auto it = std::find_if(row_replicas_.begin(), row_replicas_.end(),
                             [&](const auto& b) { return b->id() == RowBucketOf(r); });
      PSTRAIN_LOG(WARNING) << "promoted to primary of row bucket " << (*it)->id();
      buckets_.push_back(std::move(*it));
      row_replicas_.erase(it);
      continue;
    }
    auto it = std::find_if(replicas_.begin(), replicas_.end(),
                           [&](const auto& replica) { return replica->keys() == r; });
    PSTRAIN_LOG(WARNING) << "promoted to primary of keys " << ToString(r) << " at clock "
                         << (*it)->pieces().front()->version();
    shards_.push_back(std::move(*it));
    replicas_.erase(it);
  }
  for (const RoutingPlan::Backup& b : plan.backups) {
    const int to = b.server;
    uint64_t to_incarnation = 0;
    if (to >= 0) {
      auto backup = std::find_if(servers.begin(), servers.end(),
                                 [to](const ServerEntry& s) { return s.id == to; });
      RETURN_IF_ERROR(ConnectLink(*backup));
      to_incarnation = backup->incarnation;
    }
    if (IsRowBucket(b.keys)) {
      // As for a range: a new backup gets the bucket's state first.
      const uint32_t id = RowBucketOf(b.keys);
      const std::pair<int, uint64_t> backup{to, to_incarnation};
      auto was = bucket_backup_.find(id);
      const bool changed = was == bucket_backup_.end() || was->second != backup;
      if (changed) ReleaseHeldReplies(id);
      if (to >= 0 && changed) SendRowState(to, *FindBucket(buckets_, b.keys));
      bucket_backup_[id] = backup;
      continue;
    }
    RangeShard* shard = FindShard(b.keys);
    // A new backup gets the range's state first: it may hold nothing yet
    // (a server started in a dead one's place), or other weights (a job
    // resumed from a checkpoint initialises replicas afresh).
    auto& was = backup_of_[b.keys.begin];
    if (to >= 0 && (was != to || !shard->pieces().front()->replicated())) {
      SendReplicaState(to, *shard);
    }
    was = to;
    for (const auto& piece : shard->pieces()) {
      DenseShard* p = piece.get();
      if (to < 0) {
        p->SetReplication(nullptr);
      } else {
        p->SetReplication([this, to, p](const DenseShard::Update& u) { Replicate(to, p, u); });
      }
    }
  }
  for (auto it = links_.begin(); it != links_.end();) {
    const bool alive = std::any_of(servers.begin(), servers.end(),
                                   [&](const ServerEntry& s) { return s.id == it->first; });
    it = alive ? std::next(it) : links_.erase(it);
  }
  ServeReadyPulls();
  return OkStatus();
}

Status Server::ConnectLink(const ServerEntry& backup) {
  // A server started in a dead one's place has its id, not its address.
  if (links_.count(backup.id) != 0 && link_incarnation_[backup.id] == backup.incarnation) {
    return OkStatus();
  }
  link_incarnation_[backup.id] = backup.incarnation;
  SocketOptions o;
  o.max_message_bytes = static_cast<int64_t>(kMaxDataFrameBytes);
  ASSIGN_OR_RETURN(std::unique_ptr<Socket> link, Socket::Create(ctx_, SocketKind::kDealer, o));
  RETURN_IF_ERROR(link->Connect(BestEndpoint(backup)));
  links_[backup.id] = std::move(link);
  return OkStatus();
}

void Server::Replicate(int to, DenseShard* shard, const DenseShard::Update& u) {
  const uint64_t id = next_replicate_++;
  capnp::MallocMessageBuilder m;
  auto h = ServerHeader(m, msg::DataOp::REPLICATE, id, u.part);
  h.setLr(u.lr);
  h.setStep(u.step);
  h.setVersion(u.version);
  h.setClock(u.clock);
  h.setSlot(u.slot);
  h.setSampleCount(u.samples);
  h.setSampleHash(u.sample_hash);
  Message frames;
  frames.push_back(EncodeFrame(m));
  if (u.gradient != nullptr) {
    h.setPayloadFrames(1);
    frames[0] = EncodeFrame(m);
    frames.push_back(Frame::Copy(u.gradient, keys_->Flat(u.part).size() * sizeof(float)));
  }
  replicating_[id] = {shard, u.version};
  Status s = links_[to]->Send(frames);
  if (!s.ok()) PSTRAIN_LOG(WARNING) << "replication to server " << to << " failed: " << s.message();
}

msg::DataHeader::Builder Server::ServerHeader(capnp::MessageBuilder& m, msg::DataOp op, uint64_t id,
                                              const KeyRange& keys) {
  auto h = m.initRoot<msg::DataHeader>();
  h.setOp(op);
  h.setRequestId(id);
  h.setWorkerId(assignment_.node_id);
  h.setIncarnation(incarnation_);
  h.setMembershipEpoch(admission_.routing_epoch());
  h.initKeyRange().setBegin(keys.begin);
  h.getKeyRange().setEnd(keys.end);
  return h;
}

Message Server::StateMessage(uint64_t id, const KeyRange& keys, const std::vector<uint8_t>& bytes,
                             int64_t version, int64_t piece, int32_t pieces) {
  capnp::MallocMessageBuilder m;
  auto h = ServerHeader(m, msg::DataOp::REPLICA_STATE, id, keys);
  h.setVersion(version);
  h.setStep(piece);   // this piece
  h.setSlot(pieces);  // of so many
  // Frames below the data socket's bound on one frame.
  constexpr size_t kChunk = kMaxDataFrameBytes / 2;
  Message frames;
  frames.push_back(Frame());
  for (size_t at = 0; at < bytes.size(); at += kChunk) {
    frames.push_back(Frame::Copy(bytes.data() + at, std::min(kChunk, bytes.size() - at)));
  }
  h.setPayloadFrames(static_cast<uint32_t>(frames.size() - 1));
  frames[0] = EncodeFrame(m);
  return frames;
}

void Server::SendReplicaState(int to, RangeShard& shard) {
  // Piece by piece, each at its own version: cut, a range's pieces finish a
  // clock one after the other.
  const auto& pieces = shard.pieces();
  for (size_t p = 0; p < pieces.size(); ++p) {
    DenseShard& piece = *pieces[p];
    BinaryWriter w;
    piece.Save(w);
    const uint64_t id = next_replicate_++;
    Message frames = StateMessage(id, piece.keys(), w.Finish(), piece.version(),
                                  static_cast<int64_t>(p), static_cast<int32_t>(pieces.size()));
    replicating_[id] = {&piece, piece.version()};
    Status s = links_[to]->Send(frames);
    if (!s.ok()) {
      PSTRAIN_LOG(WARNING) << "the state of keys " << ToString(piece.keys()) << " to server " << to
                           << " failed: " << s.message();
      return;
    }
  }
  PSTRAIN_LOG(INFO) << "sent the state of keys " << ToString(shard.keys()) << " to its backup, "
                    << "server " << to;
}

Status Server::HandleReplicaState(Frame& peer, msg::DataHeader::Reader h, Message& frames) {
  const KeyRange r{h.getKeyRange().getBegin(), h.getKeyRange().getEnd()};
  if (frames.size() - 2 != h.getPayloadFrames()) {
    return InvalidArgument("a replica state with a wrong frame count");
  }
  auto joined = [&frames] {
    std::vector<uint8_t> bytes;
    for (size_t i = 2; i < frames.size(); ++i) {
      bytes.insert(bytes.end(), frames[i].data(), frames[i].data() + frames[i].size());
    }
    return bytes;
  };
  capnp::MallocMessageBuilder m;
  auto rr = m.initRoot<msg::Control>().initReplicaReady();
  rr.setNodeId(assignment_.node_id);
  rr.setKeyBegin(r.begin);
  rr.setKeyEnd(r.end);
  if (IsRowBucket(r)) {
    RowBucket* bucket = FindBucket(row_replicas_, r);
    if (bucket == nullptr) return InvalidArgument("no replica of " + ToString(r) + " here");
    ASSIGN_OR_RETURN(BinaryReader reader,
                     BinaryReader::Open("the state of " + ToString(r), joined()));
    RETURN_IF_ERROR(bucket->LoadState(reader));
    Reply(peer, h.getRequestId(), {});
    PSTRAIN_LOG(INFO) << "holds a copy of row bucket " << bucket->id() << " from server "
                      << h.getWorkerId();
    rr.setVersion(-1);
    return control_->Send(m);
  }
  DenseShard* piece = nullptr;
  RangeShard* range = nullptr;
  for (auto& rp : replicas_) {
    for (const auto& p : rp->pieces()) {
      if (p->keys() == r) {
        piece = p.get();
        range = rp.get();
      }
    }
  }
  if (piece == nullptr) return InvalidArgument("no replica of keys " + ToString(r) + " here");
  ASSIGN_OR_RETURN(BinaryReader reader,
                   BinaryReader::Open("the state of keys " + ToString(r), joined()));
  RETURN_IF_ERROR(piece->Load(reader));
  Reply(peer, h.getRequestId(), {});
  if (h.getStep() + 1 != h.getSlot()) return OkStatus();  // more pieces follow
  PSTRAIN_LOG(INFO) << "holds a copy of keys " << ToString(range->keys()) << " from server "
                    << h.getWorkerId();
  rr.setKeyBegin(range->keys().begin);
  rr.setKeyEnd(range->keys().end);
  rr.setVersion(h.getVersion());
  return control_->Send(m);
}

Status Server::ReceiveAcks() {
  for (auto& [id, link] : links_) {
    while (true) {
      Message frames;
      StatusOr<bool> got = link->Recv(&frames, 4);
      if (!got.ok() || !*got) break;
      (void)WithDecoded<msg::DataHeader>(frames[0], [&](msg::DataHeader::Reader h) {
        if (h.getOp() == msg::DataOp::ERROR) {
          PSTRAIN_LOG(ERROR) << "the backup refused an update: " << h.getError().cStr();
        }
        auto held = held_replies_.find(h.getRequestId());
        if (held != held_replies_.end()) {
          // A row push the backup applied: the worker's answer now.
          Reply(held->second.peer, held->second.request_id, {});
          held_replies_.erase(held);
          return OkStatus();
        }
        auto it = replicating_.find(h.getRequestId());
        if (it == replicating_.end()) return OkStatus();
        if (h.getOp() == msg::DataOp::REPLY) it->second.first->Acknowledged(it->second.second);
        replicating_.erase(it);
        return OkStatus();
      });
    }
  }
  return OkStatus();
}

Status Server::OnControl(msg::Control::Reader c) {
  switch (c.which()) {
    case msg::Control::ROUTING: {
      std::vector<ServerEntry> servers;
      for (auto si : c.getRouting().getServers()) servers.push_back(ReadServerInfo(si));
      // Requests routed by the table before are wrong only if a range
      // moved; a new backup changes nothing for them.
      auto primaries = [](const std::vector<ServerEntry>& table) {
        std::map<int, std::vector<KeyRange>> owned;
        for (const ServerEntry& e : table) {
          if (!e.ranges.empty()) owned[e.id] = e.ranges;
        }
        return owned;
      };
      if (primaries(servers) != primaries(servers_)) {
        admission_.set_routing_epoch(c.getRouting().getMembershipEpoch());
      }
      RETURN_IF_ERROR(ApplyRouting(servers));
      ReplayDeferred();
      return OkStatus();
    }
    case msg::Control::SHUTDOWN:
      done_ = true;
      exit_code_ = c.getShutdown().getExitCode();
      return OkStatus();
    case msg::Control::MEMBERSHIP:
      return ProcessMembership(c.getMembership());
    case msg::Control::CHECKPOINT_REQUEST:
      return ProcessCheckpoint(c.getCheckpointRequest());
    case msg::Control::STATS_REQUEST:
      return ProcessStats(c.getStatsRequest());
    case msg::Control::ADOPTED: {
      // A restarted coordinator took this server: the ranges it holds.
      capnp::MallocMessageBuilder m;
      auto st = m.initRoot<msg::Control>().initServerState();
      st.setNodeId(assignment_.node_id);
      auto put = [](auto list, const std::vector<KeyRange>& from) {
        for (size_t i = 0; i < from.size(); ++i) {
          list[static_cast<unsigned>(i)].setBegin(from[i].begin);
          list[static_cast<unsigned>(i)].setEnd(from[i].end);
        }
      };
      const std::vector<KeyRange> owned = Owned(), backups = Backups();
      put(st.initRanges(static_cast<unsigned>(owned.size())), owned);
      put(st.initBackupRanges(static_cast<unsigned>(backups.size())), backups);
      PSTRAIN_LOG(INFO) << "a restarted coordinator took this server back";
      return control_->Send(m);
    }
    default:
      return OkStatus();
  }
}

Status Server::ProcessMembership(msg::Membership::Reader mb) {
  std::vector<int> workers;
  std::vector<uint64_t> incarnations;
  for (int w : mb.getWorkers()) workers.push_back(w);
  for (uint64_t i : mb.getWorkerIncarnations()) incarnations.push_back(i);
  RETURN_IF_ERROR(admission_.SetMembership(workers, incarnations, mb.getMembershipEpoch()));
  PSTRAIN_LOG(INFO) << "membership " << mb.getMembershipEpoch() << ": " << admission_.live_workers()
                    << " live worker(s)";
  return OkStatus();
}

Status Server::SendCutMissed(uint64_t token, const std::string& why) {
  capnp::MallocMessageBuilder m;
  auto done = m.initRoot<msg::Control>().initCheckpointDone();
  done.setNodeId(assignment_.node_id);
  done.setToken(token);
  done.setMissed(true);
  done.setError(why);
  return control_->Send(m);
}

Status Server::ProcessCut(msg::CheckpointRequest::Reader req) {
  const int64_t clock = req.getCutClock();
  const uint64_t token = req.getToken();
  if (assignment_.config.cluster.consistency != Consistency::kBsp || !buckets_.empty() ||
      !row_replicas_.empty()) {
    return SendCutMissed(token, "cuts need BSP and no embedding rows");
  }
  if (writer_ != nullptr && writer_->outstanding() >= 2) {
    return SendCutMissed(token, "its earlier cuts are still being written");
  }
  for (const auto& shard : shards_) {
    if (!shard->AddCut(clock)) {
      for (const auto& s : shards_) s->DropCut(clock);
      return SendCutMissed(token, "keys " + ToString(shard->keys()) + " are at clock " +
                                      std::to_string(shard->pieces().back()->version()) +
                                      ", past the cut at " + std::to_string(clock));
    }
  }
  cuts_[clock] = {token, req.getDir()};
  return AdvanceCuts();
}

Status Server::AdvanceCuts() {
  for (auto it = cuts_.begin(); it != cuts_.end();) {
    const int64_t clock = it->first;
    if (!std::all_of(shards_.begin(), shards_.end(),
                     [clock](const auto& s) { return s->CutTaken(clock); })) {
      ++it;
      continue;
    }
    CutWriter::Job job;
    job.token = it->second.token;
    job.clock = clock;
    job.folder = it->second.dir;
    for (const auto& shard : shards_) {
      job.files.push_back({ShardFileName(assignment_.node_id, shard->keys()), shard->keys(),
                           shard->TakeCut(clock)});
    }
    if (writer_ == nullptr) writer_ = std::make_unique<CutWriter>();
    writer_->Submit(std::move(job));
    it = cuts_.erase(it);
  }
  if (writer_ == nullptr) return OkStatus();
  for (const CutWriter::Result& r : writer_->TakeResults()) {
    capnp::MallocMessageBuilder m;
    auto done = m.initRoot<msg::Control>().initCheckpointDone();
    done.setNodeId(assignment_.node_id);
    done.setToken(r.token);
    if (!r.error.empty()) done.setError(r.error);
    done.setWriteSeconds(r.seconds);
    auto files = done.initFiles(static_cast<unsigned>(r.files.size()));
    for (size_t i = 0; i < r.files.size(); ++i) {
      BuildCheckpointFile(r.files[i], files[static_cast<unsigned>(i)]);
    }
    RETURN_IF_ERROR(control_->Send(m));
  }
  return OkStatus();
}

Status Server::ProcessCheckpoint(msg::CheckpointRequest::Reader req) {
  if (req.getCutClock() > 0) return ProcessCut(req);
  capnp::MallocMessageBuilder m;
  auto done = m.initRoot<msg::Control>().initCheckpointDone();
  done.setNodeId(assignment_.node_id);
  done.setToken(req.getToken());
  const std::string dir = req.getDir();
  auto files = done.initFiles(static_cast<unsigned>(shards_.size() + buckets_.size()));
  for (size_t i = 0; i < buckets_.size(); ++i) {
    // Each row bucket this server serves, all its tables in one file.
    BinaryWriter w;
    buckets_[i]->SaveRows(w);
    auto f = files[static_cast<unsigned>(shards_.size() + i)];
    Status st = WriteCheckpointFile(dir, RowsFileName(buckets_[i]->id()), w, f);
    if (!st.ok()) {
      done.setError(st.message());
      return control_->Send(m);
    }
    const KeyRange r = RowBucketRange(buckets_[i]->id());
    f.setKeyBegin(r.begin);
    f.setKeyEnd(r.end);
    f.setClock(-1);
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    BinaryWriter w;
    shards_[i]->Save(w);
    auto f = files[static_cast<unsigned>(i)];
    Status st =
        WriteCheckpointFile(dir, ShardFileName(assignment_.node_id, shards_[i]->keys()), w, f);
    if (!st.ok()) {
      done.setError(st.message());
      break;
    }
    f.setKeyBegin(shards_[i]->keys().begin);
    f.setKeyEnd(shards_[i]->keys().end);
    int64_t clock = shards_[i]->pieces().front()->version();
    for (const auto& p : shards_[i]->pieces()) clock = std::min(clock, p->version());
    f.setClock(clock);  // as SaveRange writes it
  }
  return control_->Send(m);
}

Status Server::ProcessStats(msg::StatsRequest::Reader req) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<msg::Control>().initStatsReply();
  // Read once: every read of a message counts against its traversal limit.
  std::vector<const SparseTable*> tables;
  for (const auto& b : buckets_) {
    for (const auto& [id, t] : b->tables().tables()) tables.push_back(&t);
  }
  ShardStats st = GatherStats(shards_, tables, req.getClockBegin(), req.getClockEnd());
  // Replicas forget the same clocks, so a copy or a promotion later counts
  // only the epoch's own.
  for (const auto& replica : replicas_) {
    for (const auto& piece : replica->pieces()) {
      (void)piece->TakeSampleStats(req.getClockBegin(), req.getClockEnd());
    }
  }
  // The samples of a range of clocks are counted once (and forgotten); a
  // coordinator restarted after asking asks again, and gets the same count.
  const std::pair<int64_t, int64_t> range{req.getClockBegin(), req.getClockEnd()};
  if (range.second > range.first) {
    if (range == last_stats_range_) {
      st.min_samples = last_stats_.min_samples;
      st.sample_hash = last_stats_.sample_hash;
      st.samples_agree = last_stats_.samples_agree;
    } else {
      last_stats_range_ = range;
      last_stats_ = st;
    }
  }
  r.setSamples(st.samples_agree ? st.min_samples : -1);
  r.setSampleHash(st.sample_hash);
  r.setMinSlotSamples(st.min_samples);
  r.setNodeId(assignment_.node_id);
  r.setToken(req.getToken());
  r.setSumSquares(st.sum_squares);
  r.setUpdatesApplied(st.updates);
  r.setPushesRefused(refused_);
  r.setBadMessages(bad_messages_);
  r.setNonFiniteRefused(nonfinite_);
  r.setWeightsDigest(st.digest);
  r.setDigestBlocks(st.digest_blocks);
  r.setSparseRows(st.sparse_rows);
  r.setSparseBytes(st.sparse_bytes);
  return control_->Send(m);
}

RangeShard* Server::FindShard(const KeyRange& r) {
  for (auto& s : shards_) {
    if (r.begin >= s->keys().begin && r.end <= s->keys().end) return s.get();
  }
  return nullptr;
}

void Server::Reply(Frame& peer, uint64_t request_id, Message payload) {
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<msg::DataHeader>();
  h.setOp(msg::DataOp::REPLY);
  h.setRequestId(request_id);
  h.setPayloadFrames(static_cast<uint32_t>(payload.size()));
  Message frames;
  frames.push_back(Frame::Copy(peer.data(), peer.size()));
  frames.push_back(EncodeFrame(m));
  for (Frame& f : payload) frames.push_back(std::move(f));
  Status s = data_->Send(frames, /*dontwait=*/true);
  if (!s.ok())
    PSTRAIN_LOG(WARNING) << "reply to request " << request_id << " lost: " << s.message();
}

void Server::ReplyError(Frame& peer, uint64_t request_id, const Status& why) {
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<msg::DataHeader>();
  h.setOp(msg::DataOp::ERROR);
  h.setRequestId(request_id);
  h.setError(why.message());
  h.setErrorCode(static_cast<uint8_t>(why.code()));
  Message frames;
  frames.push_back(Frame::Copy(peer.data(), peer.size()));
  frames.push_back(EncodeFrame(m));
  (void)data_->Send(frames, /*dontwait=*/true);  // best effort: the peer may be hostile or gone
}

bool Server::ShouldDefer(msg::DataHeader::Reader h) const {
  if (h.getOp() != msg::DataOp::PUSH_ROWS && h.getOp() != msg::DataOp::PULL_ROWS) return false;
  if (h.getMembershipEpoch() <= admission_.routing_epoch()) return false;
  const KeyRange r{h.getKeyRange().getBegin(), h.getKeyRange().getEnd()};
  auto has = [&r](const auto& in) {
    return std::any_of(in.begin(), in.end(),
                       [&](const auto& b) { return IsRowBucket(r) && b->id() == RowBucketOf(r); });
  };
  return !has(buckets_) && has(row_replicas_);
}

void Server::ReplayDeferred() {
  std::deque<Deferred> waiting = std::move(deferred_);
  deferred_.clear();
  deferred_peers_.clear();
  replaying_ = true;
  for (Deferred& d : waiting) OnData(d.frames);
  replaying_ = false;
}

void Server::OnData(Message& frames) {
  if (frames.empty()) return;
  Frame& peer = frames[0];
  const std::string peer_id(reinterpret_cast<const char*>(peer.data()), peer.size());
  uint64_t request_id = 0;
  bool defer = deferred_peers_.count(peer_id) != 0;
  Status s = defer || frames.size() < 2
                 ? (defer ? OkStatus() : InvalidArgument("a data message without a header frame"))
                 : WithDecoded<msg::DataHeader>(frames[1], [&](msg::DataHeader::Reader h) {
                     request_id = h.getRequestId();
                     if (!replaying_ && deferred_.size() < kMaxDeferred && ShouldDefer(h)) {
                       defer = true;
                       return OkStatus();
                     }
                     return HandleData(peer, h, frames);
                   });
  if (defer) {
    deferred_peers_.insert(peer_id);
    deferred_.push_back({std::move(frames), std::chrono::steady_clock::now()});
    return;
  }
  if (s.ok()) return;
  ++bad_messages_;
  if (s.code() == StatusCode::kAborted) ++refused_;
  int64_t held_back = 0;
  if (refusal_log_.Allow(std::chrono::steady_clock::now(), &held_back)) {
    const std::string id(reinterpret_cast<const char*>(peer.data()), peer.size());
    PSTRAIN_LOG(WARNING) << "refused a data message from peer " << PeerName(id) << " ("
                         << bad_messages_ << " so far"
                         << (held_back > 0 ? ", " + std::to_string(held_back) + " not logged"
                                           : std::string())
                         << "): " << s.message();
  }
  ReplyError(peer, request_id, s);
}

Status Server::HandleData(Frame& peer, msg::DataHeader::Reader h, Message& frames) {
  if (h.getOp() == msg::DataOp::REPLICATE) return HandleReplicate(peer, h, frames);
  if (h.getOp() == msg::DataOp::REPLICATE_ROWS) return HandleReplicateRows(peer, h, frames);
  if (h.getOp() == msg::DataOp::REPLICA_STATE) {
    const bool known = std::any_of(servers_.begin(), servers_.end(), [&](const ServerEntry& s) {
      return s.id == h.getWorkerId() && s.incarnation == h.getIncarnation();
    });
    if (!known) return Aborted("a replica state from an unknown server");
    return HandleReplicaState(peer, h, frames);
  }
  RETURN_IF_ERROR(CheckSender(h, frames));
  switch (h.getOp()) {
    case msg::DataOp::PUSH:
      return ProcessPush(peer, h, frames);
    case msg::DataOp::PULL:
      return ProcessPull(peer, h, frames);
    case msg::DataOp::PUSH_ROWS:
      return ProcessRowPush(peer, h, frames);
    case msg::DataOp::PULL_ROWS:
      return ProcessRowPull(peer, h, frames);
    default:
      return InvalidArgument("operation " + std::to_string(static_cast<int>(h.getOp())) +
                             " is not a request");
  }
}

Status Server::CheckSender(msg::DataHeader::Reader h, const Message& frames) const {
  const bool rows = h.getOp() == msg::DataOp::PUSH_ROWS || h.getOp() == msg::DataOp::PULL_ROWS;
  return admission_.Check(h.getWorkerId(), h.getIncarnation(), h.getMembershipEpoch(),
                          h.getPayloadFrames(), frames.size() - 2, !rows);
}

StatusOr<Server::DenseRequest> Server::ParseDense(msg::DataHeader::Reader h) {
  DenseRequest d;
  d.keys = KeyRange{h.getKeyRange().getBegin(), h.getKeyRange().getEnd()};
  RETURN_IF_ERROR(keys_->CheckRange(d.keys));
  d.shard = FindShard(d.keys);
  if (d.shard == nullptr) {
    return InvalidArgument("key range " + ToString(d.keys) + " is not served here");
  }
  if (static_cast<uint16_t>(h.getDtype()) > static_cast<uint16_t>(WireType::kTopK)) {
    return InvalidArgument("unknown payload coding " +
                           std::to_string(static_cast<int>(h.getDtype())));
  }
  d.wire = static_cast<WireType>(h.getDtype());
  return d;
}

Status Server::ProcessPull(Frame& peer, msg::DataHeader::Reader h, const Message& frames) {
  ASSIGN_OR_RETURN(const DenseRequest d, ParseDense(h));
  const int worker = h.getWorkerId();
  if (frames.size() != 2) return InvalidArgument("a pull carries no payload");
  if (d.wire == WireType::kTopK) return InvalidArgument("weights are never sent top-k");
  PendingPull p{Frame::Copy(peer.data(), peer.size()),
                worker,
                d.wire,
                h.getRequestId(),
                d.shard,
                d.keys,
                h.getClock(),
                std::chrono::steady_clock::now()};
  if (d.shard->PullReady(d.keys, h.getClock())) {
    ServePull(p);
    return OkStatus();
  }
  RETURN_IF_ERROR(d.shard->CheckPullClock(d.keys, h.getClock()));
  size_t pieces = 0;
  for (const auto& owned : shards_) pieces += owned->pieces().size();
  return pulls_.Park(std::move(p), pieces);
}

Status Server::ProcessPush(Frame& peer, msg::DataHeader::Reader h, Message& frames) {
  ASSIGN_OR_RETURN(const DenseRequest d, ParseDense(h));
  const int worker = h.getWorkerId();
  const size_t payload_frames = frames.size() - 2;
  const FlatRange f = keys_->Flat(d.keys);
  if (payload_frames > 1) return InvalidArgument("a push carries at most one payload frame");
  if (h.getSampleCount() < 0) return InvalidArgument("negative sample count");
  const float lr = h.getLr();
  if (!(lr >= 0.0f) || !std::isfinite(lr)) return InvalidArgument("learning rate is not finite");
  if (assignment_.config.cluster.consistency != Consistency::kBsp &&
      !admission_.FirstTime(worker, h.getSeq())) {
    Reply(peer, h.getRequestId(), {});  // a duplicate: acknowledged, not applied
    return OkStatus();
  }
  StatusOr<Frame> payload = CheckedGradient(
      d.wire, payload_frames == 1 ? std::move(frames[2]) : Frame(), f.size(), decoded_, &scratch_);
  if (!payload.ok() && payload.status().code() == StatusCode::kDataLoss) {
    ++nonfinite_;
    return InvalidArgument("the gradient from worker " + std::to_string(worker) + " for keys " +
                           ToString(d.keys) + " " + payload.status().message());
  }
  if (!payload.ok()) return payload.status();
  RETURN_IF_ERROR(d.shard->Push(h.getSlot(), h.getClock(), d.keys, std::move(*payload),
                                h.getSampleCount(), h.getSampleHash(), lr));
  Reply(peer, h.getRequestId(), {});
  return OkStatus();
}

RowBucket* Server::FindBucket(const std::vector<std::unique_ptr<RowBucket>>& in,
                              const KeyRange& r) {
  if (!IsRowBucket(r)) return nullptr;
  for (const auto& b : in) {
    if (b->id() == RowBucketOf(r)) return b.get();
  }
  return nullptr;
}

std::vector<KeyRange> Server::Owned() const {
  std::vector<KeyRange> v;
  for (const auto& shard : shards_) v.push_back(shard->keys());
  for (const auto& b : buckets_) v.push_back(RowBucketRange(b->id()));
  return v;
}

std::vector<KeyRange> Server::Backups() const {
  std::vector<KeyRange> v;
  for (const auto& replica : replicas_) v.push_back(replica->keys());
  for (const auto& b : row_replicas_) v.push_back(RowBucketRange(b->id()));
  return v;
}

StatusOr<std::pair<RowBucket*, SparseTable*>> Server::TableFor(
    msg::DataHeader::Reader h, const std::vector<std::unique_ptr<RowBucket>>& in) {
  const KeyRange r{h.getKeyRange().getBegin(), h.getKeyRange().getEnd()};
  RowBucket* bucket = FindBucket(in, r);
  if (bucket == nullptr && h.getMembershipEpoch() > admission_.routing_epoch()) {
    // Routed by a server table this server has not got yet: asked again.
    return Aborted(ToString(r) + " is not served here yet (routing " +
                   std::to_string(h.getMembershipEpoch()) + " is on its way)");
  }
  if (bucket == nullptr) {
    return InvalidArgument(
        (IsRowBucket(r) ? "row bucket " + ToString(r) : "key range " + ToString(r)) + " is not " +
        (&in == &buckets_ ? "served" : "backed up") + " here");
  }
  ASSIGN_OR_RETURN(SparseTable * table, bucket->tables().Get(h.getTable(), h.getDim()));
  row_ids_.clear();
  const uint32_t buckets = static_cast<uint32_t>(assignment_.config.cluster.servers);
  for (uint64_t row : h.getRows()) {
    if (BucketOfRow(h.getTable(), row, buckets) != bucket->id()) {
      return InvalidArgument("row " + std::to_string(row) + " of table " +
                             std::to_string(h.getTable()) + " is not in row bucket " +
                             std::to_string(bucket->id()));
    }
    row_ids_.push_back(row);
  }
  if (row_ids_.empty()) return InvalidArgument("no rows named");
  return std::make_pair(bucket, table);
}

Status Server::ProcessRowPull(Frame& peer, msg::DataHeader::Reader h, const Message& frames) {
  ASSIGN_OR_RETURN(auto found, TableFor(h, buckets_));
  SparseTable* table = found.second;
  if (frames.size() != 2) return InvalidArgument("a row pull carries no payload");
  const size_t floats = row_ids_.size() * h.getDim();
  std::shared_ptr<std::vector<float>> buf = row_replies_.Get(floats);
  table->Pull(row_ids_, buf->data());
  Message payload;
  payload.push_back(Frame::Share(buf->data(), floats * sizeof(float), buf));
  Reply(peer, h.getRequestId(), std::move(payload));
  return OkStatus();
}

Status Server::ProcessRowPush(Frame& peer, msg::DataHeader::Reader h, const Message& frames) {
  const bool primary = h.getOp() == msg::DataOp::PUSH_ROWS;
  ASSIGN_OR_RETURN(auto found, TableFor(h, primary ? buckets_ : row_replicas_));
  auto [bucket, table] = found;
  const int worker = h.getWorkerId();
  const std::vector<uint64_t>& rows = row_ids_;
  const uint32_t dim = h.getDim();
  const size_t bytes = rows.size() * dim * sizeof(float);
  if (frames.size() != 3 || frames[2].size() != bytes) {
    return InvalidArgument("a row push of " + std::to_string(rows.size()) + " rows of " +
                           std::to_string(dim) + " floats needs one " + std::to_string(bytes) +
                           "-byte payload frame");
  }
  if (!bucket->FirstTime({h.getSlot(), h.getClock(), h.getPart()})) {
    Reply(peer, h.getRequestId(), {});  // applied before: acknowledged again
    return OkStatus();
  }
  // Frames are not aligned: copy the gradients out (into a reused buffer).
  row_scratch_.resize(rows.size() * dim);
  std::memcpy(row_scratch_.data(), frames[2].data(), bytes);
  if (const size_t i = FirstNonFinite(row_scratch_); i < row_scratch_.size()) {
    ++nonfinite_;
    return InvalidArgument("the row gradient from worker " + std::to_string(worker) +
                           " for table " + std::to_string(h.getTable()) + ", row " +
                           std::to_string(rows[i / dim]) + " holds " +
                           (std::isnan(row_scratch_[i]) ? "NaN" : "Inf") + "; refused");
  }
  if (!std::isfinite(h.getLr()) || h.getLr() < 0) {
    return InvalidArgument("a row push with learning rate " + std::to_string(h.getLr()));
  }
  table->Push(rows, row_scratch_.data(), h.getLr());
  auto backup = bucket_backup_.find(bucket->id());
  if (primary && backup != bucket_backup_.end() && backup->second.first >= 0) {
    // Acknowledged once the backup holds it too: a push the worker saw
    // answered survives this server.
    ReplicateRows(backup->second.first, h, frames[2], peer);
    return OkStatus();
  }
  Reply(peer, h.getRequestId(), {});
  return OkStatus();
}

void Server::ReplicateRows(int to, msg::DataHeader::Reader in, const Frame& payload, Frame& peer) {
  const uint64_t id = next_replicate_++;
  capnp::MallocMessageBuilder m;
  auto h = ServerHeader(m, msg::DataOp::REPLICATE_ROWS, id,
                        {in.getKeyRange().getBegin(), in.getKeyRange().getEnd()});
  h.setTable(in.getTable());
  h.setDim(in.getDim());
  h.setRows(in.getRows());
  h.setLr(in.getLr());
  h.setSlot(in.getSlot());
  h.setClock(in.getClock());
  h.setPart(in.getPart());
  h.setPayloadFrames(1);
  Message frames;
  frames.push_back(EncodeFrame(m));
  frames.push_back(Frame::Copy(payload.data(), payload.size()));
  held_replies_[id] = {Frame::Copy(peer.data(), peer.size()), in.getRequestId(),
                       RowBucketOf({in.getKeyRange().getBegin(), in.getKeyRange().getEnd()})};
  Status s = links_[to]->Send(frames);
  if (!s.ok())
    PSTRAIN_LOG(WARNING) << "row replication to server " << to << " failed: " << s.message();
}

void Server::ReleaseHeldReplies(uint32_t bucket) {
  for (auto it = held_replies_.begin(); it != held_replies_.end();) {
    if (it->second.bucket != bucket) {
      ++it;
      continue;
    }
    Reply(it->second.peer, it->second.request_id, {});
    it = held_replies_.erase(it);
  }
}

void Server::SendRowState(int to, const RowBucket& bucket) {
  BinaryWriter w;
  bucket.SaveState(w);
  const std::vector<uint8_t> bytes = w.Finish();
  Message frames =
      StateMessage(next_replicate_++, RowBucketRange(bucket.id()), bytes, -1, 0, 1);  // one piece
  Status s = links_[to]->Send(frames);
  if (!s.ok()) {
    PSTRAIN_LOG(WARNING) << "the state of row bucket " << bucket.id() << " to server " << to
                         << " failed: " << s.message();
    return;
  }
  PSTRAIN_LOG(INFO) << "sent row bucket " << bucket.id() << " (" << bytes.size()
                    << " bytes) to its backup, server " << to;
}

Status Server::HandleReplicateRows(Frame& peer, msg::DataHeader::Reader h, Message& frames) {
  const bool known = std::any_of(servers_.begin(), servers_.end(), [&](const ServerEntry& s) {
    return s.id == h.getWorkerId() && s.incarnation == h.getIncarnation();
  });
  if (!known) return Aborted("row replication from an unknown server");
  return ProcessRowPush(peer, h, frames);
}

Status Server::HandleReplicate(Frame& peer, msg::DataHeader::Reader h, Message& frames) {
  const bool known = std::any_of(servers_.begin(), servers_.end(), [&](const ServerEntry& s) {
    return s.id == h.getWorkerId() && s.incarnation == h.getIncarnation();
  });
  if (!known) return Aborted("replication from an unknown server");
  const KeyRange r{h.getKeyRange().getBegin(), h.getKeyRange().getEnd()};
  RangeShard* replica = nullptr;
  for (auto& rp : replicas_) {
    if (r.begin >= rp->keys().begin && r.end <= rp->keys().end) replica = rp.get();
  }
  if (replica == nullptr) return InvalidArgument("no replica of keys " + ToString(r) + " here");
  const size_t payload_frames = frames.size() - 2;
  if (payload_frames != h.getPayloadFrames() || payload_frames > 1) {
    return InvalidArgument("replication with a wrong frame count");
  }
  const float* g = nullptr;
  if (payload_frames == 1) {
    if (!keys_->IsValidRange(r) || frames[2].size() != keys_->Flat(r).size() * sizeof(float)) {
      return InvalidArgument("replication payload of the wrong size");
    }
    g = FramedFloats(frames[2], &scratch_);
  }
  RETURN_IF_ERROR(
      replica->ApplyReplicated({r, g, h.getLr(), h.getStep(), h.getVersion(), h.getClock(),
                                h.getSlot(), h.getSampleCount(), h.getSampleHash()}));
  Reply(peer, h.getRequestId(), {});
  return OkStatus();
}

void Server::ServePull(PendingPull& p) {
  Message payload;
  p.shard->AppendWeights(p.keys, p.wire, &payload);
  Reply(p.peer, p.request_id, std::move(payload));
}

void Server::ServeReadyPulls() {
  pulls_.ServeReady([](const PendingPull& p) { return p.shard->PullReady(p.keys, p.clock); },
                    [this](PendingPull& p) { ServePull(p); });
}

}  // namespace

Status RunServer(const ServerOptions& options, const std::atomic<bool>* stop, int* exit_code) {
  ZmqContext ctx;
  if (options.key) RETURN_IF_ERROR(ctx.EnableCurve(*options.key));
  Server server(ctx, options);
  return server.Run(stop, exit_code);
}

}  // namespace pstrain
