// pstrain export CKPT --format onnx -o model.onnx: a checkpoint's model
// graph and weights as an ONNX model (opset 13), written with the ONNX
// library's own protobuf classes. docs/export.md says how each op maps.
#pragma once

#include <string>

#include "common/base/status.h"
#include "common/nn/model.h"
#include "launch/flags.h"

namespace pstrain {

// The serialised ONNX model of `model` with its current weights: input
// "input" {batch, features} (the features as pstrain's reader makes them:
// an image's pixels / 255, row by row, channels adjacent), outputs
// "logits" and "probabilities" {batch, classes}, the batch left dynamic.
// The same model and weights give the same bytes. An op with no ONNX
// counterpart is refused with a message naming the node and its op.
StatusOr<std::string> ExportOnnx(const Model& model, const std::string& name,
                                 const std::string& producer_version);

// The command; returns the exit code (0, 1: unusable checkpoint or file,
// 2: bad command line, job or an op that cannot be exported).
int RunExport(const CommandLine& cl, const std::string& producer_version);

}  // namespace pstrain
