#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/data/dataset.h"

namespace pstrain {

StatusOr<std::vector<uint8_t>> ReadMaybeGzipFile(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return NotFound(path + ": cannot open: " + std::strerror(errno));
  }
  std::vector<uint8_t> out;
  uint8_t chunk[1 << 16];
  while (true) {
    int n = gzread(f, chunk, sizeof(chunk));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      if (err == Z_ERRNO) msg = std::strerror(errno);
      return DataLoss(path + ": read failed: " + msg);
    }
    if (n == 0) break;
    out.insert(out.end(), chunk, chunk + n);
  }
  // gzread returns 0 at a truncated gzip stream too; gzclose_r reports it.
  int rc = gzclose(f);
  if (rc == Z_BUF_ERROR) return DataLoss(path + ": gzip stream is truncated");
  if (rc != Z_OK)
    return DataLoss(path + ": gzip stream is corrupt (zlib error " + std::to_string(rc) + ")");
  return out;
}

StatusOr<IdxArray> ParseIdx(const std::string& name, const std::vector<uint8_t>& b) {
  if (b.size() < 4) {
    return InvalidArgument(name + ": not an IDX file: " + std::to_string(b.size()) +
                           " bytes is shorter than the 4-byte magic number");
  }
  if (b[0] != 0 || b[1] != 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "0x%02X%02X%02X%02X", b[0], b[1], b[2], b[3]);
    return InvalidArgument(name + ": not an IDX file: bad magic number " + buf +
                           " (IDX files start with two zero bytes)");
  }
  if (b[2] != 0x08) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%02X", b[2]);
    return InvalidArgument(name + ": IDX element type " + buf +
                           " is not supported (only unsigned bytes, 0x08)");
  }
  const int rank = b[3];
  if (rank < 1) return InvalidArgument(name + ": IDX rank is 0: no dimensions");
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (b.size() < header) {
    return InvalidArgument(name + ": truncated: the header declares " + std::to_string(rank) +
                           " dimensions but the file has only " + std::to_string(b.size()) +
                           " bytes");
  }
  IdxArray a;
  unsigned __int128 total = 1;
  for (int i = 0; i < rank; ++i) {
    const uint8_t* p = b.data() + 4 + 4 * i;
    const uint32_t d =
        (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    if (d == 0) {
      return InvalidArgument(name + ": dimension " + std::to_string(i) + " is 0");
    }
    a.dims.push_back(d);
    total *= d;
  }
  const size_t have = b.size() - header;
  if (total != have) {
    const std::string dims_text = [&] {
      std::string s;
      for (int64_t d : a.dims) s += (s.empty() ? "" : "x") + std::to_string(d);
      return s;
    }();
    if (total > have) {
      return InvalidArgument(name + ": truncated: dimensions " + dims_text + " need " +
                             std::to_string(static_cast<uint64_t>(total)) +
                             " bytes of data, the file has " + std::to_string(have));
    }
    return InvalidArgument(name + ": " + std::to_string(have - static_cast<size_t>(total)) +
                           " unexpected bytes after the " + dims_text + " data");
  }
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(header), b.end());
  return a;
}

StatusOr<Dataset> ReadIdxDataset(const std::string& images_path, const std::string& labels_path,
                                 float scale) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> image_bytes, ReadMaybeGzipFile(images_path));
  ASSIGN_OR_RETURN(IdxArray images, ParseIdx(images_path, image_bytes));
  image_bytes = {};
  ASSIGN_OR_RETURN(std::vector<uint8_t> label_bytes, ReadMaybeGzipFile(labels_path));
  ASSIGN_OR_RETURN(IdxArray labels, ParseIdx(labels_path, label_bytes));
  if (images.dims.size() < 2) {
    return InvalidArgument(images_path + ": an image file needs rank >= 2 (count, then sizes), " +
                           "this one has rank " + std::to_string(images.dims.size()) +
                           " (is it a label file?)");
  }
  if (labels.dims.size() != 1) {
    return InvalidArgument(labels_path + ": a label file needs rank 1, this one has rank " +
                           std::to_string(labels.dims.size()) + " (is it an image file?)");
  }
  if (images.dims[0] != labels.dims[0]) {
    return InvalidArgument(images_path + " has " + std::to_string(images.dims[0]) + " images but " +
                           labels_path + " has " + std::to_string(labels.dims[0]) + " labels");
  }
  Dataset ds;
  ds.source = images_path;
  ds.count = images.dims[0];
  int64_t dim = 1;
  for (size_t i = 1; i < images.dims.size(); ++i) dim *= images.dims[i];
  if (dim > (1 << 24))
    return InvalidArgument(images_path + ": an image of " + std::to_string(dim) +
                           " values is too large");
  ds.dim = static_cast<int>(dim);
  const std::vector<int64_t>& d = images.dims;
  if (d.size() == 3) ds.shape = {1, static_cast<int>(d[1]), static_cast<int>(d[2])};
  if (d.size() == 4) {
    ds.shape = {static_cast<int>(d[3]), static_cast<int>(d[1]), static_cast<int>(d[2])};
  }
  ds.features = FloatBuffer(static_cast<size_t>(ds.count) * ds.dim);
  for (size_t i = 0; i < images.data.size(); ++i) ds.features[i] = images.data[i] * scale;
  ds.labels.resize(ds.count);
  int max_label = 0;
  for (int64_t i = 0; i < ds.count; ++i) {
    ds.labels[i] = labels.data[i];
    max_label = std::max(max_label, ds.labels[i]);
  }
  ds.num_classes = max_label + 1;
  return ds;
}

Status ReconcileDatasets(Dataset* train, Dataset* test) {
  if (train->sparse != test->sparse) {
    return InvalidArgument(train->source + " and " + test->source +
                           " differ: one is sparse, the other dense");
  }
  if (train->sparse) {
    // Without data.features each set's space ends at its largest index.
    train->dim = test->dim = std::max(train->dim, test->dim);
  }
  if (train->dim != test->dim) {
    return InvalidArgument(test->source + " has " + std::to_string(test->dim) +
                           " features per sample but " + train->source + " has " +
                           std::to_string(train->dim));
  }
  if (!(train->shape == test->shape)) {
    return InvalidArgument(test->source + " has images of " + test->shape.Text() + " but " +
                           train->source + " has " + train->shape.Text());
  }
  const int classes = std::max(train->num_classes, test->num_classes);
  train->num_classes = test->num_classes = classes;
  return OkStatus();
}

}  // namespace pstrain
