// In-memory labelled data sets and the readers that fill them:
//   - IDX (MNIST's format; gzipped or plain): ReadIdxDataset
//   - CSV (a label column and numeric features): ReadCsvDataset
//   - LibSVM (sparse: "label index:value ..."): ReadLibsvmDataset
// Every reader validates its input completely and reports the first problem
// as one line naming the file and what is wrong; nothing is half-loaded.
//
// A Dataset is immutable once read and may be shared between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"
#include "common/nn/tensor.h"

namespace pstrain {

struct Dataset {
  std::string source;           // file name(s), for messages
  int64_t count = 0;            // samples
  int dim = 0;                  // features per sample (sparse: the feature space)
  int num_classes = 0;          // 1 + the largest label
  ImageShape shape;             // a sample as an image; unknown for CSV
  FloatBuffer features;         // dense: count x dim, row-major
  std::vector<int32_t> labels;  // count

  // Sparse data (LibSVM), compressed rows: sample i has the features
  // index[offsets[i] .. offsets[i+1]) (ascending) with those values.
  bool sparse = false;
  std::vector<int64_t> offsets;  // count + 1
  std::vector<uint32_t> index;
  std::vector<float> value;
  int max_active = 0;  // the most features any sample has

  const float* row(int64_t i) const { return features.data() + i * dim; }
  int active(int64_t i) const { return static_cast<int>(offsets[i + 1] - offsets[i]); }
};

// Reads the whole file, transparently gunzipping a gzip file.
StatusOr<std::vector<uint8_t>> ReadMaybeGzipFile(const std::string& path);

// An IDX array: unsigned bytes with dims[0] items of dims[1..] each.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};
// Parses IDX bytes (already gunzipped); `name` is used in messages.
StatusOr<IdxArray> ParseIdx(const std::string& name, const std::vector<uint8_t>& bytes);

// Images (rank >= 2) and labels (rank 1) of one set. Pixels are scaled by
// `scale` (1/255 maps bytes to [0, 1]). Rank 3 (count, rows, columns) gives
// the image shape 1 x rows x columns; rank 4 (count, rows, columns,
// channels) rows x columns with the channels of a pixel adjacent; other
// ranks no image shape.
StatusOr<Dataset> ReadIdxDataset(const std::string& images_path, const std::string& labels_path,
                                 float scale = 1.0f / 255.0f);

struct CsvOptions {
  int label_column = 0;  // 0-based; negative counts from the end (-1 = last)
  bool header = false;   // skip the first line
  char separator = ',';
};
// Dense CSV: one sample a line, every line the same number of fields.
// Labels are non-negative integers; features any finite number.
StatusOr<Dataset> ReadCsvDataset(const std::string& path, const CsvOptions& options);
// The same from text already in memory; `name` stands for the file in messages.
StatusOr<Dataset> ParseCsvDataset(const std::string& name, std::string_view text,
                                  const CsvOptions& options);

// LibSVM: one sample a line, "label index:value index:value ...", indices
// ascending. Binary labels only: 1 or +1 is positive, 0 or -1 negative.
// `features` bounds the indices (the feature space; 0: one more than the
// largest index seen). Empty lines and lines starting with # are skipped.
struct LibsvmOptions {
  int64_t features = 0;
};
StatusOr<Dataset> ReadLibsvmDataset(const std::string& path, const LibsvmOptions& options);
StatusOr<Dataset> ParseLibsvmDataset(const std::string& name, std::string_view text,
                                     const LibsvmOptions& options);

// Checks that train and test data agree in shape: same dim and image shape,
// test labels within train's classes (num_classes becomes the larger of the
// two).
Status ReconcileDatasets(Dataset* train, Dataset* test);

}  // namespace pstrain
