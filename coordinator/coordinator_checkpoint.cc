// Checkpoints as the coordinator orchestrates them: asking every server to
// save its ranges, writing the manifest, choosing the one to resume from.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/base/logging.h"
#include "common/ckpt/checkpoint.h"
#include "common/data/handout.h"
#include "common/data/job_data.h"
#include "common/nn/optimizer.h"
#include "common/ps/weights_digest.h"
#include "coordinator/coordinator.h"

namespace pstrain {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

StatusOr<Manifest> Coordinator::PickCheckpoint() {
  const JobConfig& c = options_.config;
  if (c.checkpoint_dir.empty()) {
    return InvalidArgument("--resume needs checkpoint.dir (or --checkpoint-dir DIR)");
  }
  std::vector<std::string> skipped;
  StatusOr<Manifest> m = FindNewestCheckpoint(c.checkpoint_dir, &skipped);
  for (const std::string& s : skipped) {
    console_->Banner(s);
    RETURN_IF_ERROR(metrics_->Write(JsonObject().Add("event", "checkpoint_skipped").Add("why", s)));
  }
  if (!m.ok()) return m.status();
  auto mismatch = [&](const char* what, int64_t have, int64_t want) {
    return InvalidArgument(m->dir + " was written by a job with " + what + " " +
                           std::to_string(have) + "; this job has " + std::to_string(want));
  };
  if (m->servers != c.cluster.servers) return mismatch("servers", m->servers, c.cluster.servers);
  if (m->workers != c.cluster.workers) return mismatch("workers", m->workers, c.cluster.workers);
  if (m->batch_size != c.batch_size) return mismatch("batch_size", m->batch_size, c.batch_size);
  if (m->seed != c.seed) {
    return mismatch("seed", static_cast<int64_t>(m->seed), static_cast<int64_t>(c.seed));
  }
  return m;
}

Status Coordinator::WriteCheckpoint(int epochs_done) {
  const JobConfig& c = options_.config;
  const auto start = Clock::now();
  const std::string folder = CheckpointFolder(c.checkpoint_dir, epochs_done);
  PublishPhase("checkpointing", 0);
  std::error_code ec;
  std::filesystem::remove_all(folder, ec);  // a half-written one from a crash
  // Room for the new one: keep the newest keep - 1 beside it. With keep 1
  // the old one stays until the new one is complete (a crash meanwhile must
  // not leave none), so the disk must hold two.
  if (c.checkpoint_keep > 1) PruneCheckpoints(c.checkpoint_dir, c.checkpoint_keep - 1);
  std::filesystem::create_directories(folder, ec);
  if (ec) return DataLoss("cannot create checkpoint folder " + folder + ": " + ec.message());
  // A checkpoint that fails is removed whole: its files would only fill
  // the disk, and the older ones stay for --resume.
  auto failed = [&](const std::string& why) {
    std::error_code rm;
    std::filesystem::remove_all(folder, rm);
    std::vector<std::string> skipped;
    StatusOr<Manifest> left = FindNewestCheckpoint(c.checkpoint_dir, &skipped);
    return DataLoss("checkpoint " + folder + " failed: " + why + "; its files were removed" +
                    (left.ok() ? "; --resume starts from " + left->dir
                               : std::string("; no earlier checkpoint is left")));
  };
  const uint64_t token = static_cast<uint64_t>(clock_) * 2 + 7;
  std::vector<Node*> servers = NodesOf(msg::Role::SERVER);
  for (Node* s : servers) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<msg::Control>().initCheckpointRequest();
    r.setToken(token);
    r.setDir(folder);
    RETURN_IF_ERROR(SendTo(*s, m));
  }
  StatusOr<Manifest> started = StartManifest(folder, epochs_done, 0);
  if (!started.ok()) return failed(started.status().message());
  Manifest manifest = std::move(*started);
  std::map<int, std::string> errors;
  size_t answered = 0;
  RETURN_IF_ERROR(WaitUntil([&] { return answered == servers.size(); },
                            "the servers to write checkpoint " + folder, std::chrono::seconds(600),
                            [&](Node& n, msg::Control::Reader m) -> Status {
                              if (m.which() != msg::Control::CHECKPOINT_DONE ||
                                  m.getCheckpointDone().getToken() != token) {
                                return OkStatus();
                              }
                              auto d = m.getCheckpointDone();
                              ++answered;
                              if (d.getError().size() > 0) errors[n.id] = d.getError();
                              for (auto f : d.getFiles()) {
                                manifest.files.push_back(ReadCheckpointFile(f));
                              }
                              return OkStatus();
                            }));
  if (!errors.empty()) {
    return failed("on server " + std::to_string(errors.begin()->first) + ": " +
                  errors.begin()->second);
  }
  if (Status s = WriteManifest(folder, manifest); !s.ok()) return failed(s.message());
  PruneCheckpoints(c.checkpoint_dir, c.checkpoint_keep);
  last_checkpoint_ = Clock::now();
  return metrics_->Write(JsonObject()
                             .Add("event", "checkpoint")
                             .Add("epochs_done", epochs_done)
                             .Add("dir", folder)
                             .Add("seconds", Since(start)));
}

StatusOr<Manifest> Coordinator::StartManifest(const std::string& folder, int epochs_done,
                                              int64_t step) {
  const JobConfig& c = options_.config;
  Manifest manifest;
  manifest.epochs_done = epochs_done;
  manifest.step = step;
  manifest.clock = clock_;
  manifest.seed = c.seed;
  manifest.servers = c.cluster.servers;
  manifest.workers = c.cluster.workers;
  manifest.batch_size = c.batch_size;
  manifest.tensors = tensors_;
  // The job as it runs, so the checkpoint can be evaluated on its own.
  ASSIGN_OR_RETURN(const std::string job, ResolvedJobToml(options_.job_text, options_.job_name,
                                                          options_.base_dir, options_.overrides));
  const std::span<const uint8_t> job_bytes(reinterpret_cast<const uint8_t*>(job.data()),
                                           job.size());
  RETURN_IF_ERROR(WriteFileDurably(folder + "/job.toml", job_bytes));
  manifest.job.name = "job.toml";
  manifest.job.bytes = job.size();
  manifest.job.crc32 = Crc32(job_bytes);
  manifest.job.whole_file_crc = true;
  return manifest;
}

Status Coordinator::ScheduleCuts() {
  const JobConfig& c = options_.config;
  const int64_t every = c.checkpoint_every_steps;
  if (every <= 0 || c.checkpoint_dir.empty()) return OkStatus();
  for (int64_t step = (current_.first_step / every + 1) * every; step < current_.steps;
       step += every) {
    RETURN_IF_ERROR(ScheduleCut(step, false));
  }
  return OkStatus();
}

Status Coordinator::ScheduleCut(int64_t step, bool timed) {
  const uint64_t token = (uint64_t{1} << 62) | next_cut_++;
  Cut& cut = cuts_[token];
  cut.epochs_done = current_.epoch;
  cut.step = step;
  cut.clock = current_.first_clock + step;
  cut.folder = CheckpointFolder(options_.config.checkpoint_dir, current_.epoch, step);
  cut.timed = timed;
  for (Node* s : NodesOf(msg::Role::SERVER)) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<msg::Control>().initCheckpointRequest();
    r.setToken(token);
    r.setDir(cut.folder);
    r.setCutClock(cut.clock);
    RETURN_IF_ERROR(SendTo(*s, m));
    cut.waiting.insert(s->id);
  }
  return OkStatus();
}

Status Coordinator::MaybeTimedCut(Clock::time_point epoch_start) {
  const JobConfig& c = options_.config;
  if (c.checkpoint_every_seconds <= 0 || c.checkpoint_dir.empty() ||
      Since(last_checkpoint_) < c.checkpoint_every_seconds) {
    return OkStatus();
  }
  for (const auto& [token, cut] : cuts_) {
    if (cut.timed) return OkStatus();  // one at a time
  }
  // Ahead of the fastest worker by what the workers do in a fifth of a
  // second (more after each miss), so the request reaches every server
  // before its ranges pass the step.
  const int64_t done = std::max(progress_steps_, current_.first_step);
  const double rate =
      static_cast<double>(done - current_.first_step) / std::max(Since(epoch_start), 1e-3);
  const int64_t ahead = std::max<int64_t>(4, static_cast<int64_t>(std::ceil(rate * 0.2)));
  int64_t step = done + (ahead << timed_misses_);
  for (bool taken = true; taken;) {
    taken = false;
    for (const auto& [token, cut] : cuts_) {
      if (cut.epochs_done == current_.epoch && cut.step == step) taken = true;
    }
    if (taken) ++step;
  }
  if (step >= current_.steps) return OkStatus();  // the epoch ends first
  return ScheduleCut(step, true);
}

Status Coordinator::AbandonCuts(int server, const std::string& why) {
  std::vector<uint64_t> tokens;
  for (auto& [token, cut] : cuts_) {
    if (cut.waiting.count(server) == 0) continue;
    if (cut.failed.empty()) cut.failed = why;
    tokens.push_back(token);
  }
  // Each answered now for the dead server, as if it had said why.
  for (uint64_t token : tokens) {
    capnp::MallocMessageBuilder m;
    auto d = m.initRoot<msg::Control>().initCheckpointDone();
    d.setNodeId(server);
    d.setToken(token);
    d.setMissed(true);
    d.setError(why);
    Node n;
    n.id = server;
    n.role = msg::Role::SERVER;
    RETURN_IF_ERROR(OnCutDone(n, m.getRoot<msg::Control>().asReader().getCheckpointDone()));
  }
  return OkStatus();
}

Status Coordinator::OnCutDone(const Node& n, msg::CheckpointDone::Reader d) {
  auto it = cuts_.find(d.getToken());
  if (it == cuts_.end() || it->second.waiting.erase(n.id) == 0) return OkStatus();
  Cut& cut = it->second;
  const std::string where = "the checkpoint after step " + std::to_string(cut.step) + " of epoch " +
                            std::to_string(cut.epochs_done + 1) + " (" + cut.folder + ")";
  if (d.getError().size() > 0 && cut.failed.empty()) {
    cut.failed = "server " + std::to_string(n.id) + ": " + std::string(d.getError().cStr());
    cut.fatal = !d.getMissed();
  }
  cut.write_seconds = std::max(cut.write_seconds, d.getWriteSeconds());
  for (auto f : d.getFiles()) cut.files.push_back(ReadCheckpointFile(f));
  if (!cut.waiting.empty()) return OkStatus();
  const Cut done = std::move(cut);
  cuts_.erase(it);
  const JobConfig& c = options_.config;
  std::error_code ec;
  if (!done.failed.empty()) {
    std::filesystem::remove_all(done.folder, ec);
    if (done.fatal) {
      StatusOr<Manifest> left = FindNewestCheckpoint(c.checkpoint_dir, nullptr);
      return DataLoss(where + " failed: " + done.failed + "; its files were removed" +
                      (left.ok() ? "; --resume starts from " + left->dir
                                 : std::string("; no earlier checkpoint is left")));
    }
    if (done.timed) timed_misses_ = std::min(timed_misses_ + 1, 6);
    PSTRAIN_LOG(INFO) << where << " was skipped: " << done.failed;
    return metrics_->Write(JsonObject()
                               .Add("event", "checkpoint_skipped")
                               .Add("dir", done.folder)
                               .Add("why", done.failed));
  }
  const int64_t clock = clock_;
  clock_ = done.clock;  // what StartManifest records
  StatusOr<Manifest> manifest = StartManifest(done.folder, done.epochs_done, done.step);
  clock_ = clock;
  Status st = manifest.status();
  if (st.ok()) {
    manifest->files = done.files;
    st = WriteManifest(done.folder, *manifest);
  }
  if (!st.ok()) {
    std::filesystem::remove_all(done.folder, ec);
    return DataLoss(where + " failed: " + st.message() + "; its files were removed");
  }
  PruneCheckpoints(c.checkpoint_dir, c.checkpoint_keep);
  last_checkpoint_ = Clock::now();
  if (done.timed) timed_misses_ = 0;
  return metrics_->Write(JsonObject()
                             .Add("event", "checkpoint")
                             .Add("epochs_done", done.epochs_done)
                             .Add("step", done.step)
                             .Add("clock", done.clock)
                             .Add("dir", done.folder)
                             .Add("write_seconds", done.write_seconds));
}

}  // namespace pstrain
