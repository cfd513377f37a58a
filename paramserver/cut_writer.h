// Writes a server's cut of a checkpoint taken while training goes on: the
// shards' images (copies taken at the cut's clock) are coded and written
// durably on a thread of its own, so the server's thread only copies the
// arrays and goes back to applying updates.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/ckpt/checkpoint.h"
#include "paramserver/dense_shard.h"

namespace pstrain {

class CutWriter {
 public:
  struct File {
    std::string name;  // inside the folder
    KeyRange keys;
    std::vector<DenseShard::Image> pieces;  // consecutive pieces of `keys`
  };
  struct Job {
    uint64_t token = 0;
    int64_t clock = 0;
    std::string folder;  // made if missing
    std::vector<File> files;
  };
  struct Result {
    uint64_t token = 0;
    std::vector<ManifestFile> files;  // as the manifest lists them
    std::string error;                // not empty: the cut failed, and why
    double seconds = 0;               // coding and writing the files
  };

  CutWriter();
  // Finishes the jobs submitted (a cut half on disk helps nobody, but a
  // thread must not be left running).
  ~CutWriter();
  CutWriter(const CutWriter&) = delete;
  CutWriter& operator=(const CutWriter&) = delete;

  void Submit(Job job);
  // The jobs finished since the last call.
  std::vector<Result> TakeResults();
  // Jobs submitted whose results were not taken yet.
  size_t outstanding() const;

 private:
  void Loop();
  static Result Write(const Job& job);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<Result> results_;
  size_t outstanding_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace pstrain
