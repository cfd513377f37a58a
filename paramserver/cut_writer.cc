#include "paramserver/cut_writer.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <utility>

#include "common/base/logging.h"

namespace pstrain {

CutWriter::CutWriter() {
  // Signals are the main thread's (it stops the server on SIGTERM).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  thread_ = std::thread([this] { Loop(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

CutWriter::~CutWriter() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CutWriter::Submit(Job job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    jobs_.push_back(std::move(job));
    ++outstanding_;
  }
  cv_.notify_all();
}

std::vector<CutWriter::Result> CutWriter::TakeResults() {
  std::lock_guard<std::mutex> l(mu_);
  outstanding_ -= results_.size();
  return std::exchange(results_, {});
}

size_t CutWriter::outstanding() const {
  std::lock_guard<std::mutex> l(mu_);
  return outstanding_;
}

void CutWriter::Loop() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopped, and nothing left to write
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    const auto start = std::chrono::steady_clock::now();
    Result r = Write(job);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    job = Job{};  // the images go before the next job's arrive
    std::lock_guard<std::mutex> l(mu_);
    results_.push_back(std::move(r));
  }
}

CutWriter::Result CutWriter::Write(const Job& job) {
  Result r;
  r.token = job.token;
  std::error_code ec;
  std::filesystem::create_directories(job.folder, ec);
  if (ec) {
    r.error = "cannot create checkpoint folder " + job.folder + ": " + ec.message();
    return r;
  }
  for (const File& f : job.files) {
    std::vector<const DenseShard::Image*> views;
    for (const DenseShard::Image& m : f.pieces) views.push_back(&m);
    BinaryWriter w;
    DenseShard::SaveImages(w, views);
    const std::vector<uint8_t> bytes = w.Finish();
    if (Status s = WriteFileDurably(job.folder + "/" + f.name, bytes); !s.ok()) {
      r.error = s.message();
      r.files.clear();
      return r;
    }
    ManifestFile mf;
    mf.name = f.name;
    mf.bytes = bytes.size();
    mf.crc32 = ContentCrc32(bytes);
    mf.key_begin = f.keys.begin;
    mf.key_end = f.keys.end;
    mf.clock = job.clock;
    r.files.push_back(std::move(mf));
  }
  return r;
}

}  // namespace pstrain
