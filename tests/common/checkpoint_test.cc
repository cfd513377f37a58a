#include "common/ckpt/checkpoint.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "common/base/rng.h"
#include "tests/test_util.h"

namespace pstrain {
namespace {

using testing::TempDir;

std::vector<uint8_t> SampleFile(float value, size_t floats = 100) {
  BinaryWriter w;
  w.U64(42);
  w.I64(-7);
  w.F64(0.25);
  w.Floats(std::vector<float>(floats, value));
  return w.Finish();
}

// A complete checkpoint folder of `files` files for `epochs`.
void WriteCheckpoint(const std::string& dir, int epochs, float value, int files = 2,
                     size_t floats = 100, int64_t step = 0) {
  const std::string folder = CheckpointFolder(dir, epochs, step);
  std::filesystem::create_directories(folder);
  Manifest m;
  m.epochs_done = epochs;
  m.step = step;
  m.clock = epochs * 10 + step;
  m.seed = 3;
  m.servers = files;
  m.workers = 2;
  m.batch_size = 64;
  for (int i = 0; i < files; ++i) {
    const std::vector<uint8_t> bytes = SampleFile(value + i, floats);
    const std::string name = "server-" + std::to_string(i) + ".bin";
    REQUIRE(WriteFileDurably(folder + "/" + name, bytes).ok());
    ManifestFile f;
    f.name = name;
    f.bytes = bytes.size();
    f.crc32 = ContentCrc32(bytes);
    f.key_begin = static_cast<uint64_t>(i);
    f.key_end = static_cast<uint64_t>(i + 1);
    f.clock = m.clock;
    m.files.push_back(f);
  }
  REQUIRE(WriteManifest(folder, m).ok());
}

TEST_CASE("Checkpoint files round-trip and every damage is named", "[checkpoint]") {
  std::vector<uint8_t> bytes = SampleFile(1.5f);
  auto r = BinaryReader::Open("f", bytes);
  REQUIRE(r.ok());
  CHECK(*r->U64() == 42);
  CHECK(*r->I64() == -7);
  CHECK(*r->F64() == 0.25);
  std::vector<float> v(100);
  REQUIRE(r->Floats(v).ok());
  CHECK(v[99] == 1.5f);
  CHECK(r->AtEnd());
  CHECK_THAT(r->U64().status().message(), Catch::Contains("f: ends inside a 64-bit field"));

  SECTION("truncated") {
    bytes.resize(bytes.size() - 10);
    CHECK_THAT(BinaryReader::Open("f", bytes).status().message(),
               Catch::Contains("checksum mismatch"));
  }
  SECTION("bit flip") {
    bytes[40] ^= 0x10;
    CHECK_THAT(BinaryReader::Open("f", bytes).status().message(),
               Catch::Contains("checksum mismatch"));
  }
  SECTION("not a checkpoint") {
    bytes[0] = 'X';
    CHECK_THAT(BinaryReader::Open("f", bytes).status().message(), Catch::Contains("bad magic"));
  }
  SECTION("too short") {
    CHECK_THAT(BinaryReader::Open("f", {1, 2, 3}).status().message(), Catch::Contains("truncated"));
  }
  SECTION("wrong array size") {
    auto r2 = BinaryReader::Open("f", SampleFile(1.0f));
    (void)r2->U64();
    (void)r2->I64();
    (void)r2->F64();
    std::vector<float> small(5);
    CHECK_THAT(r2->Floats(small).message(),
               Catch::Contains("holds 100 values where 5 were expected"));
  }
}

TEST_CASE("The newest checkpoint that verifies is chosen, and damaged ones are skipped with why",
          "[checkpoint]") {
  TempDir dir;
  const std::string d = dir.path().string();
  WriteCheckpoint(d, 1, 1.0f);
  WriteCheckpoint(d, 2, 2.0f);
  WriteCheckpoint(d, 3, 3.0f);
  std::vector<std::string> skipped;
  auto m = FindNewestCheckpoint(d, &skipped);
  REQUIRE(m.ok());
  CHECK(m->epochs_done == 3);
  CHECK(m->clock == 30);
  CHECK(skipped.empty());

  const std::string f3 = CheckpointFolder(d, 3) + "/server-1.bin";
  SECTION("a truncated file") {
    std::filesystem::resize_file(f3, 50);
    m = FindNewestCheckpoint(d, &skipped);
    REQUIRE(m.ok());
    CHECK(m->epochs_done == 2);
    REQUIRE(skipped.size() == 1);
    CHECK_THAT(skipped[0], Catch::Contains("ckpt-000003"));
    CHECK_THAT(skipped[0], Catch::Contains("truncated"));
  }
  SECTION("a flipped bit") {
    std::string bytes = testing::ReadFile(f3);
    bytes[60] ^= 1;
    testing::WriteFile(f3, bytes);
    m = FindNewestCheckpoint(d, &skipped);
    REQUIRE(m.ok());
    CHECK(m->epochs_done == 2);
    CHECK_THAT(skipped.at(0), Catch::Contains("checksum mismatch"));
  }
  SECTION("a missing manifest (the run died before finishing it)") {
    std::filesystem::remove(CheckpointFolder(d, 3) + "/MANIFEST");
    m = FindNewestCheckpoint(d, &skipped);
    REQUIRE(m.ok());
    CHECK(m->epochs_done == 2);
    CHECK_THAT(skipped.at(0), Catch::Contains("never completed"));
  }
  SECTION("a damaged manifest") {
    const std::string mf = CheckpointFolder(d, 3) + "/MANIFEST";
    std::string text = testing::ReadFile(mf);
    text[30] = text[30] == '1' ? '2' : '1';
    testing::WriteFile(mf, text);
    m = FindNewestCheckpoint(d, &skipped);
    REQUIRE(m.ok());
    CHECK(m->epochs_done == 2);
    CHECK_THAT(skipped.at(0), Catch::Contains("manifest is damaged"));
  }
  SECTION("pruning keeps the newest, and clears what failed writes left") {
    testing::WriteFile(CheckpointFolder(d, 3) + "/server-9.bin.tmp", "half");
    PruneCheckpoints(d, 2);
    CHECK_FALSE(std::filesystem::exists(CheckpointFolder(d, 1)));
    CHECK(std::filesystem::exists(CheckpointFolder(d, 2)));
    CHECK(std::filesystem::exists(CheckpointFolder(d, 3) + "/server-1.bin"));
    CHECK_FALSE(std::filesystem::exists(CheckpointFolder(d, 3) + "/server-9.bin.tmp"));
    PruneCheckpoints(d, 0);
    CHECK(std::filesystem::is_empty(d));
  }
  SECTION("a file copied in from another checkpoint") {
    // Both are sound files: only the manifest can tell them apart.
    std::filesystem::copy_file(CheckpointFolder(d, 2) + "/server-1.bin", f3,
                               std::filesystem::copy_options::overwrite_existing);
    m = FindNewestCheckpoint(d, &skipped);
    REQUIRE(m.ok());
    CHECK(m->epochs_done == 2);
    CHECK_THAT(skipped.at(0), Catch::Contains("ckpt-000003/server-1.bin: is not the file this "
                                              "checkpoint's manifest lists"));
  }
  SECTION("keys listed twice") {
    auto three = ReadManifest(CheckpointFolder(d, 3));
    REQUIRE(three.ok());
    three->files[1].key_begin = 0;
    REQUIRE(WriteManifest(CheckpointFolder(d, 3), *three).ok());
    m = FindNewestCheckpoint(d, &skipped);
    REQUIRE(m.ok());
    CHECK(m->epochs_done == 2);
    CHECK_THAT(skipped.at(0),
               Catch::Contains("server-0.bin and server-1.bin both hold keys from 0"));
  }
  SECTION("nothing valid") {
    TempDir empty;
    CHECK(FindNewestCheckpoint(empty.path().string(), nullptr).status().code() ==
          StatusCode::kNotFound);
  }
}

TEST_CASE("The manifest lists what tells files apart: content checksum, keys and clock",
          "[checkpoint]") {
  TempDir dir;
  const std::string d = dir.path().string();
  WriteCheckpoint(d, 1, 1.0f);
  WriteCheckpoint(d, 2, 2.0f);
  auto one = VerifyCheckpoint(CheckpointFolder(d, 1));
  auto two = VerifyCheckpoint(CheckpointFolder(d, 2));
  REQUIRE(one.ok());
  REQUIRE(two.ok());
  CHECK(one->format == 2);
  // The CRC-32 of a whole file that ends with its own CRC-32 is the same
  // for every file; the content's is not.
  CHECK(one->files[0].crc32 != two->files[0].crc32);
  CHECK(one->files[0].crc32 != one->files[1].crc32);
  CHECK(two->files[1].clock == 20);
  auto f = FileForKeys(*two, 1, 2);
  REQUIRE(f.ok());
  CHECK(f->name == "server-1.bin");
  CHECK_THAT(FileForKeys(*two, 0, 2).status().message(),
             Catch::Contains("ckpt-000002 lists no file for keys [0, 2)"));
}

TEST_CASE("A checkpoint of format 1 still reads and verifies", "[checkpoint]") {
  TempDir dir;
  const std::string folder = CheckpointFolder(dir.path().string(), 4);
  std::filesystem::create_directories(folder);
  const std::vector<uint8_t> bytes = SampleFile(4.0f);
  REQUIRE(WriteFileDurably(folder + "/server-0.bin", bytes).ok());
  std::string text =
      "pstrain-checkpoint 1\nepochs_done 4\nclock 40\nseed 3\nservers 1\n"
      "workers 2\nbatch_size 64\nfile server-0.bin " +
      std::to_string(bytes.size()) + " " + std::to_string(Crc32(bytes)) + " 0 5\n";
  text += "crc32 " +
          std::to_string(Crc32(std::span<const uint8_t>(
              reinterpret_cast<const uint8_t*>(text.data()), text.size()))) +
          "\n";
  testing::WriteFile(folder + "/MANIFEST", text);
  auto m = VerifyCheckpoint(folder);
  INFO(m.status().message());
  REQUIRE(m.ok());
  CHECK(m->format == 1);
  CHECK(m->files.at(0).clock == -1);
  CHECK(m->files.at(0).key_end == 5);
}

TEST_CASE("A durable write that fails (the disk is full) leaves no temporary file",
          "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.File("big.bin");
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Writes past 64 KiB fail in this process (EFBIG), as on a full disk.
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{1 << 16, 1 << 16};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    const std::vector<uint8_t> bytes(1 << 20, 7);
    const Status s = WriteFileDurably(path, bytes);
    ::_exit(!s.ok() && s.message().find("big.bin.tmp: write failed") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("A checkpoint killed while being written never becomes the one resumed from",
          "[checkpoint]") {
  TempDir dir;
  const std::string d = dir.path().string();
  WriteCheckpoint(d, 1, 1.0f, 2, 1 << 20);
  Rng rng(17);
  int completed = 0, interrupted = 0;
  for (int round = 0; round < 25; ++round) {
    std::filesystem::remove_all(CheckpointFolder(d, 2));
    const pid_t child = ::fork();
    if (child == 0) {
      WriteCheckpoint(d, 2, 2.0f, 2, 1 << 20);  // 8 MiB of files, then the manifest
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng.Below(60000)));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    auto m = FindNewestCheckpoint(d, nullptr);
    REQUIRE(m.ok());
    if (m->epochs_done == 2) {
      ++completed;  // it finished before the kill: it must verify in full
      REQUIRE(VerifyCheckpoint(CheckpointFolder(d, 2)).ok());
    } else {
      ++interrupted;
      CHECK(m->epochs_done == 1);
    }
  }
  INFO(completed << " completed, " << interrupted << " interrupted");
  CHECK(interrupted > 0);
}

TEST_CASE("The manifest keeps the job copy and the tensors, and checks the copy", "[checkpoint]") {
  TempDir dir;
  WriteCheckpoint(dir.path().string(), 1, 1.0f);
  const std::string folder = CheckpointFolder(dir.path().string(), 1);
  auto m = VerifyCheckpoint(folder);
  REQUIRE(m.ok());
  CHECK(m->job.name.empty());
  CHECK(m->tensors.empty());
  const std::string job = "[train]\nepochs = 3\n";
  testing::WriteFile(folder + "/job.toml", job);
  const std::vector<uint8_t> job_bytes(job.begin(), job.end());
  m->job.name = "job.toml";
  m->job.bytes = job.size();
  m->job.crc32 = Crc32(job_bytes);
  m->job.whole_file_crc = true;
  m->tensors = {{"dense1.weight", {784, 256}}, {"dense1.bias", {256}}};
  REQUIRE(WriteManifest(folder, *m).ok());
  auto back = VerifyCheckpoint(folder);
  REQUIRE(back.ok());
  CHECK(back->job.name == "job.toml");
  CHECK(back->job.bytes == job.size());
  REQUIRE(back->tensors.size() == 2);
  CHECK(back->tensors[0].name == "dense1.weight");
  CHECK(back->tensors[0].shape == std::vector<int64_t>{784, 256});
  CHECK(back->tensors[1].shape == std::vector<int64_t>{256});
  CHECK(ReadManifest(folder).ok());

  testing::WriteFile(folder + "/job.toml", "[train]\nepochs = 4\n");
  auto damaged = VerifyCheckpoint(folder);
  REQUIRE_FALSE(damaged.ok());
  CHECK_THAT(damaged.status().message(), Catch::Contains("job.toml: checksum mismatch"));
  // The manifest alone still reads; each file is checked on its own.
  REQUIRE(ReadManifest(folder).ok());
  CHECK(VerifyCheckpointFile(folder, back->files[0]).ok());
  CHECK_FALSE(VerifyCheckpointFile(folder, back->job).ok());
}

}  // namespace
}  // namespace pstrain

namespace pstrain {
namespace {

TEST_CASE("Checkpoints taken within an epoch sort by when they were taken and resume there",
          "[checkpoint]") {
  TempDir tmp;
  const std::string d = tmp.path();
  WriteCheckpoint(d, 1, 1.0f);
  WriteCheckpoint(d, 1, 2.0f, 2, 100, 4);
  WriteCheckpoint(d, 1, 3.0f, 2, 100, 8);
  CHECK(CheckpointFolder(d, 1, 8) == d + "/ckpt-000001-00000008");
  std::vector<std::string> skipped;
  StatusOr<Manifest> m = FindNewestCheckpoint(d, &skipped);
  REQUIRE(m.ok());
  CHECK(m->epochs_done == 1);
  CHECK(m->step == 8);
  CHECK(m->clock == 18);
  CHECK(skipped.empty());
  // The next epoch's checkpoint is newer than any within the one before.
  WriteCheckpoint(d, 2, 4.0f);
  m = FindNewestCheckpoint(d, &skipped);
  REQUIRE(m.ok());
  CHECK(m->epochs_done == 2);
  CHECK(m->step == 0);
  // The manifest says how far into the epoch it was taken.
  std::string text = testing::ReadFile(CheckpointFolder(d, 1, 8) + "/MANIFEST");
  CHECK(text.find("\nstep 8\n") != std::string::npos);
}

TEST_CASE("Pruning leaves the checkpoint being written alone and removes abandoned ones",
          "[checkpoint]") {
  TempDir tmp;
  const std::string d = tmp.path();
  WriteCheckpoint(d, 1, 1.0f);
  std::filesystem::create_directories(CheckpointFolder(d, 1, 3));  // abandoned, older
  testing::WriteFile(CheckpointFolder(d, 1, 3) + "/server-0.bin.tmp", "half");
  WriteCheckpoint(d, 1, 2.0f, 2, 100, 5);
  WriteCheckpoint(d, 1, 3.0f, 2, 100, 7);
  // Being written by the servers: newer than every complete one.
  std::filesystem::create_directories(CheckpointFolder(d, 1, 9));
  testing::WriteFile(CheckpointFolder(d, 1, 9) + "/server-0.bin.tmp", "being written");
  PruneCheckpoints(d, 2);
  CHECK(std::filesystem::exists(CheckpointFolder(d, 1, 9) + "/server-0.bin.tmp"));
  CHECK(std::filesystem::exists(CheckpointFolder(d, 1, 7) + "/MANIFEST"));
  CHECK(std::filesystem::exists(CheckpointFolder(d, 1, 5) + "/MANIFEST"));
  CHECK_FALSE(std::filesystem::exists(CheckpointFolder(d, 1, 3)));
  CHECK_FALSE(std::filesystem::exists(CheckpointFolder(d, 1)));
  // keep 1 with one complete: the one being written stays beside it.
  PruneCheckpoints(d, 1);
  CHECK(std::filesystem::exists(CheckpointFolder(d, 1, 9)));
  CHECK(std::filesystem::exists(CheckpointFolder(d, 1, 7) + "/MANIFEST"));
  CHECK_FALSE(std::filesystem::exists(CheckpointFolder(d, 1, 5)));
}

}  // namespace
}  // namespace pstrain
