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
  Manifest manifest;
  manifest.epochs_done = epochs_done;
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
  if (Status s = WriteFileDurably(folder + "/job.toml", job_bytes); !s.ok()) {
    return failed(s.message());
  }
  manifest.job.name = "job.toml";
  manifest.job.bytes = job.size();
  manifest.job.crc32 = Crc32(job_bytes);
  manifest.job.whole_file_crc = true;
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
                                ManifestFile mf;
                                mf.name = f.getName();
                                mf.bytes = f.getBytes();
                                mf.crc32 = f.getCrc32();
                                mf.key_begin = f.getKeyBegin();
                                mf.key_end = f.getKeyEnd();
                                mf.clock = f.getClock();
                                manifest.files.push_back(std::move(mf));
                              }
                              return OkStatus();
                            }));
  if (!errors.empty()) {
    return failed("on server " + std::to_string(errors.begin()->first) + ": " +
                  errors.begin()->second);
  }
  if (Status s = WriteManifest(folder, manifest); !s.ok()) return failed(s.message());
  PruneCheckpoints(c.checkpoint_dir, c.checkpoint_keep);
  return metrics_->Write(JsonObject()
                             .Add("event", "checkpoint")
                             .Add("epochs_done", epochs_done)
                             .Add("dir", folder)
                             .Add("seconds", Since(start)));
}

}  // namespace pstrain
