// Compressed transfer of gradients and weights: IEEE half (fp16) and
// bfloat16 (the top 16 bits of a float, rounded to nearest even), and top-k
// sparsification with error feedback: each push sends the k entries of
// largest magnitude of (gradient + residual) and keeps the rest as the next
// residual, so nothing is lost, only delayed (Stich et al., 2018).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace pstrain {

enum class WireType : uint8_t { kFloat32 = 0, kFloat16 = 1, kBfloat16 = 2, kTopK = 3 };

// "none" | "fp16" | "bf16" | "topk".
StatusOr<WireType> ParseWireType(const std::string& name);
const char* WireTypeName(WireType t);
// Bytes per value on the wire for the dense types.
size_t WireBytes(WireType t);

void FloatToHalf(const float* in, uint16_t* out, size_t n);
void HalfToFloat(const uint16_t* in, float* out, size_t n);
void FloatToBf16(const float* in, uint16_t* out, size_t n);
void Bf16ToFloat(const uint16_t* in, float* out, size_t n);

// Top-k of acc = grad + residual over n values, approximately: entries whose
// |acc| reaches the (1 - k/n) quantile of a strided sample of about 4096
// of them (exact when n <= 4096), in one pass, at most `cap` of them.
// Writes their indices (ascending) and acc values, zeroes them in residual
// (which keeps the rest of acc) and returns how many. `scratch` is reused.
size_t TopKWithFeedback(const float* grad, float* residual, size_t n, size_t k, size_t cap,
                        uint32_t* indices, float* values, std::vector<float>* scratch);

// A payload of n floats' worth of values, as sent, back to n floats in
// *out: dense fp32/fp16/bf16 of exactly n values, or top-k (k uint32
// indices ascending and below n, then k floats; the rest zero).
Status DecodeValues(WireType t, const uint8_t* payload, size_t bytes, size_t n,
                    std::vector<float>* out);

}  // namespace pstrain
