#include <charconv>
#include <cmath>
#include <limits>
#include <string_view>

#include "common/dataset.h"

namespace pstrain {
namespace {

// The largest feature space a data set may have (Dataset::dim is an int).
constexpr int64_t kMaxFeatures = std::numeric_limits<int32_t>::max();

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The next whitespace-separated token of `line` from `pos`, or empty.
std::string_view NextToken(std::string_view line, size_t* pos) {
  size_t p = *pos;
  while (p < line.size() && IsSpace(line[p])) ++p;
  size_t e = p;
  while (e < line.size() && !IsSpace(line[e])) ++e;
  *pos = e;
  return line.substr(p, e - p);
}

std::string Quote(std::string_view s) {
  if (s.size() > 40) return "\"" + std::string(s.substr(0, 40)) + "...\"";
  return "\"" + std::string(s) + "\"";
}

}  // namespace

StatusOr<Dataset> ReadLibsvmDataset(const std::string& path, const LibsvmOptions& options) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadMaybeGzipFile(path));
  return ParseLibsvmDataset(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), options);
}

StatusOr<Dataset> ParseLibsvmDataset(const std::string& name, std::string_view text,
                                     const LibsvmOptions& options) {
  if (options.features < 0 || options.features > kMaxFeatures) {
    return InvalidArgument(name + ": the feature space must be in [1, " +
                           std::to_string(kMaxFeatures) + "], got " +
                           std::to_string(options.features));
  }
  Dataset d;
  d.source = name;
  d.sparse = true;
  d.num_classes = 2;
  d.offsets.push_back(0);
  int64_t largest = -1;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const auto where = [&] { return name + ":" + std::to_string(line_no) + ": "; };
    size_t at = 0;
    const std::string_view label = NextToken(line, &at);
    if (label.empty() || label[0] == '#') continue;
    if (label == "1" || label == "+1" || label == "1.0" || label == "+1.0") {
      d.labels.push_back(1);
    } else if (label == "0" || label == "-1" || label == "0.0" || label == "-1.0") {
      d.labels.push_back(0);
    } else {
      return InvalidArgument(where() + "the label " + Quote(label) +
                             " is not binary: use 1 or +1 for positive, 0 or -1 for negative");
    }
    int64_t previous = -1;
    while (true) {
      const std::string_view tok = NextToken(line, &at);
      if (tok.empty() || tok[0] == '#') break;
      const size_t colon = tok.find(':');
      if (colon == std::string_view::npos) {
        return InvalidArgument(where() + Quote(tok) + " is not index:value");
      }
      if (tok.substr(0, colon) == "qid") continue;  // ranking data's query id
      int64_t index = -1;
      auto [ip, iec] = std::from_chars(tok.data(), tok.data() + colon, index);
      if (iec != std::errc() || ip != tok.data() + colon || index < 0) {
        return InvalidArgument(where() + "the index in " + Quote(tok) +
                               " is not a non-negative integer");
      }
      if (index >= (options.features > 0 ? options.features : kMaxFeatures)) {
        return InvalidArgument(
            where() + "feature index " + std::to_string(index) + " is outside the feature space " +
            (options.features > 0 ? "of data.features = " + std::to_string(options.features)
                                  : "(at most " + std::to_string(kMaxFeatures - 1) + ")"));
      }
      if (index <= previous) {
        return InvalidArgument(where() + "feature index " + std::to_string(index) +
                               " follows index " + std::to_string(previous) +
                               ": indices must be strictly ascending within a line");
      }
      previous = index;
      float value = 0;
      const char* vb = tok.data() + colon + 1;
      auto [vp, vec] = std::from_chars(vb, tok.data() + tok.size(), value);
      if (vec != std::errc() || vp != tok.data() + tok.size() || !std::isfinite(value)) {
        return InvalidArgument(where() + "the value in " + Quote(tok) + " is not a finite number");
      }
      d.index.push_back(static_cast<uint32_t>(index));
      d.value.push_back(value);
      largest = std::max(largest, index);
    }
    d.offsets.push_back(static_cast<int64_t>(d.index.size()));
    d.max_active = std::max(d.max_active, d.active(static_cast<int64_t>(d.labels.size()) - 1));
  }
  d.count = static_cast<int64_t>(d.labels.size());
  if (d.count == 0) return InvalidArgument(name + ": no samples (an empty LibSVM file)");
  if (largest < 0) return InvalidArgument(name + ": no sample has any feature");
  d.dim = static_cast<int>(options.features > 0 ? options.features : largest + 1);
  return d;
}

}  // namespace pstrain
