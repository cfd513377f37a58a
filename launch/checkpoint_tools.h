// Commands that read a checkpoint without a running job:
//   pstrain inspect DIR   what the checkpoint holds: manifest, files with key
//                         ranges, sizes and checksums, tensors and their norms
//   pstrain eval DIR      loads the weights into the job's model and prints
//                         test loss, accuracy and the confusion matrix
// DIR is a checkpoint folder (ckpt-EEEEEE) or a checkpoint.dir holding
// several; then the newest is used (eval: the newest that verifies).
#pragma once

#include <memory>
#include <string>

#include "common/ckpt/checkpoint.h"
#include "common/data/job_data.h"
#include "common/job/config.h"
#include "common/nn/model.h"
#include "launch/flags.h"

namespace pstrain {

// A checkpoint's weights in its job's model (dense models only), with the
// job's data: what eval, export and predict start from.
struct LoadedCheckpoint {
  std::string folder;  // the checkpoint folder used
  Manifest manifest;
  JobConfig config;
  JobData data;
  std::unique_ptr<Model> model;  // batches of up to config.eval_batch_size
};
// The checkpoint named by cl.positional[0] (a folder, or a checkpoint.dir:
// its newest that verifies), with the job it holds (or --job) and its
// overrides. On an error `exit_code` is 1 (a damaged or unusable
// checkpoint or data) or 2 (a bad command line or job); `command` names
// the command in messages.
StatusOr<LoadedCheckpoint> LoadCheckpoint(const CommandLine& cl, const std::string& command,
                                          int* exit_code);

// Both return the process's exit code: 0 fine, 1 a damaged or unusable
// checkpoint, 2 a bad command line or job.
int RunInspect(const CommandLine& cl);
int RunEval(const CommandLine& cl);

}  // namespace pstrain
