#include <zlib.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "common/data/dataset.h"

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

// Parses LibSVM text line by line into a Dataset.
class LibsvmParser {
 public:
  LibsvmParser(std::string name, const LibsvmOptions& options)
      : name_(std::move(name)), options_(options) {
    d_.source = name_;
    d_.sparse = true;
    d_.num_classes = 2;
    d_.offsets.push_back(0);
  }

  Status Line(std::string_view line);
  StatusOr<Dataset> Finish();

 private:
  std::string Where() const { return name_ + ":" + std::to_string(line_no_) + ": "; }

  std::string name_;
  LibsvmOptions options_;
  Dataset d_;
  int64_t largest_ = -1;
  int64_t line_no_ = 0;
};

Status LibsvmParser::Line(std::string_view line) {
  ++line_no_;
  size_t at = 0;
  const std::string_view label = NextToken(line, &at);
  if (label.empty() || label[0] == '#') return OkStatus();
  if (label == "1" || label == "+1" || label == "1.0" || label == "+1.0") {
    d_.labels.push_back(1);
  } else if (label == "0" || label == "-1" || label == "0.0" || label == "-1.0") {
    d_.labels.push_back(0);
  } else {
    return InvalidArgument(Where() + "the label " + Quote(label) +
                           " is not binary: use 1 or +1 for positive, 0 or -1 for negative");
  }
  int64_t previous = -1;
  const int64_t space = options_.features > 0 ? options_.features : kMaxFeatures;
  while (true) {
    const std::string_view tok = NextToken(line, &at);
    if (tok.empty() || tok[0] == '#') break;
    const size_t colon = tok.find(':');
    if (colon == std::string_view::npos) {
      return InvalidArgument(Where() + Quote(tok) + " is not index:value");
    }
    if (tok.substr(0, colon) == "qid") continue;  // ranking data's query id
    int64_t index = -1;
    auto [ip, iec] = std::from_chars(tok.data(), tok.data() + colon, index);
    if (iec != std::errc() || ip != tok.data() + colon || index < 0) {
      return InvalidArgument(Where() + "the index in " + Quote(tok) +
                             " is not a non-negative integer");
    }
    if (index >= space) {
      return InvalidArgument(
          Where() + "feature index " + std::to_string(index) + " is outside the feature space " +
          (options_.features > 0 ? "of data.features = " + std::to_string(options_.features)
                                 : "(at most " + std::to_string(kMaxFeatures - 1) + ")"));
    }
    if (index <= previous) {
      return InvalidArgument(Where() + "feature index " + std::to_string(index) +
                             " follows index " + std::to_string(previous) +
                             ": indices must be strictly ascending within a line");
    }
    previous = index;
    float value = 0;
    const char* vb = tok.data() + colon + 1;
    auto [vp, vec] = std::from_chars(vb, tok.data() + tok.size(), value);
    if (vec != std::errc() || vp != tok.data() + tok.size() || !std::isfinite(value)) {
      return InvalidArgument(Where() + "the value in " + Quote(tok) + " is not a finite number");
    }
    d_.index.push_back(static_cast<uint32_t>(index));
    d_.value.push_back(value);
    largest_ = std::max(largest_, index);
  }
  d_.offsets.push_back(static_cast<int64_t>(d_.index.size()));
  d_.max_active = std::max(d_.max_active, d_.active(static_cast<int64_t>(d_.labels.size()) - 1));
  return OkStatus();
}

StatusOr<Dataset> LibsvmParser::Finish() {
  d_.count = static_cast<int64_t>(d_.labels.size());
  if (d_.count == 0) return InvalidArgument(name_ + ": no samples (an empty LibSVM file)");
  if (largest_ < 0) return InvalidArgument(name_ + ": no sample has any feature");
  d_.dim = static_cast<int>(options_.features > 0 ? options_.features : largest_ + 1);
  return std::move(d_);
}

Status CheckOptions(const std::string& name, const LibsvmOptions& options) {
  if (options.features < 0 || options.features > kMaxFeatures) {
    return InvalidArgument(name + ": the feature space must be in [1, " +
                           std::to_string(kMaxFeatures) + "], got " +
                           std::to_string(options.features));
  }
  return OkStatus();
}

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};

}  // namespace

// Streams the file (gzipped or plain) through the parser, a chunk at a
// time, so the text is never held whole next to the data.
StatusOr<Dataset> ReadLibsvmDataset(const std::string& path, const LibsvmOptions& options) {
  RETURN_IF_ERROR(CheckOptions(path, options));
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) return NotFound(path + ": cannot open: " + std::strerror(errno));
  gzbuffer(f.get(), 1 << 20);
  LibsvmParser parser(path, options);
  std::string pending;
  std::vector<char> chunk(4 << 20);
  while (true) {
    const int n = gzread(f.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int err = 0;
      return DataLoss(path + ": read failed: " + gzerror(f.get(), &err));
    }
    if (n == 0) break;
    std::string_view text(chunk.data(), static_cast<size_t>(n));
    size_t pos = 0;
    while (true) {
      const size_t nl = text.find('\n', pos);
      if (nl == std::string_view::npos) break;
      if (pending.empty()) {
        RETURN_IF_ERROR(parser.Line(text.substr(pos, nl - pos)));
      } else {
        pending.append(text.substr(pos, nl - pos));
        RETURN_IF_ERROR(parser.Line(pending));
        pending.clear();
      }
      pos = nl + 1;
    }
    pending.append(text.substr(pos));
  }
  if (!gzeof(f.get())) return DataLoss(path + ": truncated gzip stream");
  if (!pending.empty()) RETURN_IF_ERROR(parser.Line(pending));
  return parser.Finish();
}

StatusOr<Dataset> ParseLibsvmDataset(const std::string& name, std::string_view text,
                                     const LibsvmOptions& options) {
  RETURN_IF_ERROR(CheckOptions(name, options));
  LibsvmParser parser(name, options);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    RETURN_IF_ERROR(parser.Line(text.substr(pos, end - pos)));
    pos = end + 1;
  }
  return parser.Finish();
}

}  // namespace pstrain
