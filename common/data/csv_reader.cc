#include <charconv>
#include <cmath>
#include <string_view>

#include "common/data/dataset.h"

namespace pstrain {
namespace {

std::string Where(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

StatusOr<Dataset> ReadCsvDataset(const std::string& path, const CsvOptions& options) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadMaybeGzipFile(path));
  return ParseCsvDataset(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), options);
}

StatusOr<Dataset> ParseCsvDataset(const std::string& path, std::string_view text,
                                  const CsvOptions& options) {
  std::vector<float> features;
  std::vector<int32_t> labels;
  int fields_per_line = -1;
  int label_col = -1;
  int max_label = 0;
  int64_t line_no = 0;
  size_t pos = 0;
  std::vector<std::string_view> fields;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line_no == 1 && options.header) continue;
    if (Trim(line).empty()) continue;
    fields.clear();
    size_t start = 0;
    while (true) {
      size_t sep = line.find(options.separator, start);
      if (sep == std::string_view::npos) {
        fields.push_back(Trim(line.substr(start)));
        break;
      }
      fields.push_back(Trim(line.substr(start, sep - start)));
      start = sep + 1;
    }
    const int n = static_cast<int>(fields.size());
    if (fields_per_line < 0) {
      if (n < 2) {
        return InvalidArgument(Where(path, line_no) + ": found " + std::to_string(n) +
                               " field; a sample needs a label and at least one feature");
      }
      fields_per_line = n;
      label_col = options.label_column < 0 ? n + options.label_column : options.label_column;
      if (label_col < 0 || label_col >= n) {
        return InvalidArgument(path + ": label_column " + std::to_string(options.label_column) +
                               " is outside the " + std::to_string(n) + " fields of a line");
      }
    } else if (n != fields_per_line) {
      return InvalidArgument(Where(path, line_no) + ": expected " +
                             std::to_string(fields_per_line) +
                             " fields like the first sample, found " + std::to_string(n));
    }
    for (int c = 0; c < n; ++c) {
      std::string_view f = fields[c];
      if (c == label_col) {
        int64_t label = -1;
        auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), label);
        if (ec != std::errc() || p != f.data() + f.size() || label < 0 || label > 65535) {
          return InvalidArgument(Where(path, line_no) + ": label \"" + std::string(f) +
                                 "\" is not an integer in [0, 65535]");
        }
        labels.push_back(static_cast<int32_t>(label));
        max_label = std::max(max_label, static_cast<int>(label));
        continue;
      }
      float v = 0;
      const char* b = f.data();
      if (!f.empty() && *b == '+') ++b;
      auto [p, ec] = std::from_chars(b, f.data() + f.size(), v);
      if (f.empty() || ec != std::errc() || p != f.data() + f.size() || !std::isfinite(v)) {
        return InvalidArgument(Where(path, line_no) + ": field " + std::to_string(c + 1) + " \"" +
                               std::string(f) + "\" is not a finite number");
      }
      features.push_back(v);
    }
  }
  if (labels.empty()) return InvalidArgument(path + ": no samples (the file is empty)");

  Dataset ds;
  ds.source = path;
  ds.count = static_cast<int64_t>(labels.size());
  ds.dim = fields_per_line - 1;
  ds.features = FloatBuffer(features.size());
  std::copy(features.begin(), features.end(), ds.features.data());
  ds.labels = std::move(labels);
  ds.num_classes = max_label + 1;
  return ds;
}

}  // namespace pstrain
