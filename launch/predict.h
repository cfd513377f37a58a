// pstrain predict CKPT --input FILE [--format idx|csv] -o OUT [--top-k K]:
// batch inference with the checkpoint's model, streaming the input (plain
// or gzipped) a batch at a time and writing one line per sample: JSON
// lines {"index", "class", "probabilities"} (the k most probable as "top"
// when the model has more than 10 classes), or CSV rows when OUT ends in
// .csv. Prints the throughput.
#pragma once

#include "launch/flags.h"

namespace pstrain {

// Returns the exit code: 0; 1 an unusable checkpoint or input file (the
// output is then not written); 2 a bad command line or job.
int RunPredict(const CommandLine& cl);

}  // namespace pstrain
