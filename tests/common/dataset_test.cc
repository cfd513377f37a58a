#include "common/data/dataset.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "tests/test_util.h"

namespace pstrain {
namespace {

using testing::TempDir;
using testing::WriteFile;
using testing::WriteGzipFile;

void Be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

std::vector<uint8_t> IdxImages(uint32_t count, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> b = {0, 0, 8, 3};
  Be32(b, count);
  Be32(b, rows);
  Be32(b, cols);
  for (uint32_t i = 0; i < count * rows * cols; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

std::vector<uint8_t> IdxLabels(uint32_t count) {
  std::vector<uint8_t> b = {0, 0, 8, 1};
  Be32(b, count);
  for (uint32_t i = 0; i < count; ++i) b.push_back(static_cast<uint8_t>(i % 3));
  return b;
}

TEST_CASE("IDX files load plain and gzipped with pixels scaled to [0,1]", "[common][data]") {
  TempDir dir;
  WriteFile(dir.File("img"), IdxImages(4, 2, 3));
  WriteGzipFile(dir.File("lbl.gz"), IdxLabels(4));
  auto ds = ReadIdxDataset(dir.File("img"), dir.File("lbl.gz"));
  REQUIRE(ds.ok());
  CHECK(ds->count == 4);
  CHECK(ds->dim == 6);
  CHECK(ds->num_classes == 3);
  CHECK(ds->labels == std::vector<int32_t>{0, 1, 2, 0});
  CHECK(ds->row(1)[0] == Approx(42 / 255.0));
}

// Each bad file must give one line naming the file and the problem.
TEST_CASE("Bad IDX files get an error naming the file and what is wrong", "[common][data]") {
  TempDir dir;
  const std::string img = dir.File("images.idx"), lbl = dir.File("labels.idx");
  WriteFile(lbl, IdxLabels(4));
  std::vector<uint8_t> good = IdxImages(4, 2, 3);
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    const char* expect;
  };
  std::vector<uint8_t> truncated(good.begin(), good.end() - 5);
  std::vector<uint8_t> trailing = good;
  trailing.push_back(1);
  std::vector<uint8_t> wrong_magic = good;
  wrong_magic[0] = 0x1f;
  std::vector<uint8_t> float_type = good;
  float_type[2] = 0x0D;
  std::vector<uint8_t> zero_dim = good;
  zero_dim[11] = 0;
  std::vector<uint8_t> short_header = {0, 0, 8, 3, 0, 0};
  const std::vector<Case> cases = {
      {"truncated data", truncated,
       "truncated: dimensions 4x2x3 need 24 bytes of data, the file has 19"},
      {"trailing bytes", trailing, "1 unexpected bytes after the 4x2x3 data"},
      {"wrong magic", wrong_magic, "bad magic number 0x1F000803"},
      {"unsupported type", float_type, "element type 0x0D is not supported"},
      {"zero dimension", zero_dim, "dimension 1 is 0"},
      {"short header", short_header, "truncated: the header declares 3 dimensions"},
      {"empty", {}, "shorter than the 4-byte magic number"},
      {"label file as images", IdxLabels(4), "needs rank >= 2"},
      {"count mismatch", IdxImages(5, 2, 3), "has 5 images but"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      WriteFile(img, c.bytes);
      auto ds = ReadIdxDataset(img, lbl);
      REQUIRE_FALSE(ds.ok());
      const std::string& msg = ds.status().message();
      CHECK_THAT(msg, Catch::Contains(img));
      CHECK_THAT(msg, Catch::Contains(c.expect));
      CHECK(msg.find('\n') == std::string::npos);
    }
  }
  SECTION("images given as labels") {
    WriteFile(img, good);
    auto ds = ReadIdxDataset(img, img);
    REQUIRE_FALSE(ds.ok());
    CHECK_THAT(ds.status().message(), Catch::Contains("a label file needs rank 1"));
  }
  SECTION("missing file") {
    auto ds = ReadIdxDataset(dir.File("nope"), lbl);
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().code() == StatusCode::kNotFound);
    CHECK_THAT(ds.status().message(), Catch::Contains(dir.File("nope") + ": cannot open"));
  }
  SECTION("truncated gzip stream") {
    WriteGzipFile(img, IdxImages(50, 28, 28));
    std::string bytes = testing::ReadFile(img);
    WriteFile(img, bytes.substr(0, bytes.size() / 2));
    auto ds = ReadIdxDataset(img, lbl);
    REQUIRE_FALSE(ds.ok());
    CHECK_THAT(ds.status().message(), Catch::Contains(img));
    CHECK(ds.status().code() == StatusCode::kDataLoss);
  }
}

TEST_CASE("CSV files load with the label in any column", "[common][data]") {
  TempDir dir;
  WriteFile(dir.File("a.csv"), "label,x,y\n1,0.5,-2\n0, 1e-3 ,+4\n\n2,3,4\r\n");
  CsvOptions o;
  o.header = true;
  auto ds = ReadCsvDataset(dir.File("a.csv"), o);
  REQUIRE(ds.ok());
  CHECK(ds->count == 3);
  CHECK(ds->dim == 2);
  CHECK(ds->num_classes == 3);
  CHECK(ds->labels == std::vector<int32_t>{1, 0, 2});
  CHECK(ds->row(1)[0] == Approx(1e-3));
  CHECK(ds->row(1)[1] == Approx(4));

  WriteFile(dir.File("b.csv"), "0.5,-2,1\n1,4,0\n");
  o = CsvOptions{};
  o.label_column = -1;
  auto last = ReadCsvDataset(dir.File("b.csv"), o);
  REQUIRE(last.ok());
  CHECK(last->labels == std::vector<int32_t>{1, 0});
  CHECK(last->row(0)[1] == Approx(-2));
}

TEST_CASE("Bad CSV files get an error naming the file, line and problem", "[common][data]") {
  TempDir dir;
  const std::string f = dir.File("bad.csv");
  struct Case {
    const char* name;
    const char* text;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"ragged", "1,2,3\n0,1\n", ":2: expected 3 fields like the first sample, found 2"},
      {"not a number", "1,2,3\n0,1,abc\n", ":2: field 3 \"abc\" is not a finite number"},
      {"nan", "1,2,nan\n", ":1: field 3 \"nan\" is not a finite number"},
      {"bad label", "x,2,3\n", ":1: label \"x\" is not an integer"},
      {"negative label", "-1,2,3\n", ":1: label \"-1\" is not an integer"},
      {"one field", "1\n", ":1: found 1 field"},
      {"empty", "", "no samples"},
      {"empty field", "1,,3\n", ":1: field 2 \"\" is not a finite number"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      WriteFile(f, c.text);
      auto ds = ReadCsvDataset(f, CsvOptions{});
      REQUIRE_FALSE(ds.ok());
      CHECK_THAT(ds.status().message(), Catch::Contains(f));
      CHECK_THAT(ds.status().message(), Catch::Contains(c.expect));
    }
  }
  SECTION("label column out of range") {
    WriteFile(f, "1,2\n");
    CsvOptions o;
    o.label_column = 5;
    auto ds = ReadCsvDataset(f, o);
    REQUIRE_FALSE(ds.ok());
    CHECK_THAT(ds.status().message(), Catch::Contains("label_column 5 is outside the 2 fields"));
  }
}

TEST_CASE("Train and test sets must agree in features", "[common][data]") {
  Dataset a, b;
  a.dim = 4;
  a.num_classes = 3;
  a.source = "train";
  b.dim = 5;
  b.source = "test";
  Status s = ReconcileDatasets(&a, &b);
  CHECK_THAT(s.message(), Catch::Contains("test has 5 features per sample but train has 4"));
  b.dim = 4;
  b.num_classes = 5;
  REQUIRE(ReconcileDatasets(&a, &b).ok());
  CHECK(a.num_classes == 5);
}

}  // namespace
}  // namespace pstrain
