// Commands that read a checkpoint without a running job:
//   pstrain inspect DIR   what the checkpoint holds: manifest, files with key
//                         ranges, sizes and checksums, tensors and their norms
//   pstrain eval DIR      loads the weights into the job's model and prints
//                         test loss, accuracy and the confusion matrix
// DIR is a checkpoint folder (ckpt-EEEEEE) or a checkpoint.dir holding
// several; then the newest is used (eval: the newest that verifies).
#pragma once

#include "launch/flags.h"

namespace pstrain {

// Both return the process's exit code: 0 fine, 1 a damaged or unusable
// checkpoint, 2 a bad command line or job.
int RunInspect(const CommandLine& cl);
int RunEval(const CommandLine& cl);

}  // namespace pstrain
