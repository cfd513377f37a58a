#include "paramserver/push_payload.h"

#include <cmath>
#include <string>

#include "common/nn/tensor.h"

namespace pstrain {

StatusOr<Frame> CheckedGradient(WireType wire, Frame payload, size_t floats,
                                VectorPool<float>& pool, std::vector<float>* scratch) {
  if (wire != WireType::kFloat32 && payload.size() > 0) {
    std::shared_ptr<std::vector<float>> decoded = pool.Get(floats);
    RETURN_IF_ERROR(DecodeValues(wire, payload.data(), payload.size(), floats, decoded.get()));
    payload = Frame::Share(decoded->data(), decoded->size() * sizeof(float), decoded);
  }
  if (payload.size() % sizeof(float) != 0) {
    return InvalidArgument("payload of " + std::to_string(payload.size()) +
                           " bytes is not a whole number of floats");
  }
  const float* g = FramedFloats(payload, scratch);
  const size_t count = payload.size() / sizeof(float);
  if (const size_t i = FirstNonFinite({g, count}); i < count) {
    return DataLoss(std::string("holds ") + (std::isnan(g[i]) ? "NaN" : "Inf") + " at value " +
                    std::to_string(i) + "; refused");
  }
  return payload;
}

}  // namespace pstrain
