// The client side of the parameter servers: a C++ class another program can
// use on its own. It owns one DEALER per server and routes each request to
// the servers that own its keys (dense) or rows (sparse, placed by hash).
// Many requests may be in flight; Push and Pull return at once with a
// ticket, Wait(ticket) completes it.
//
// Requests are cut into messages on the piece grid (KeyLayout::Pieces: at
// tensor boundaries and every kPieceBlocks blocks, well below the servers'
// frame limit), so a server that applies each piece on its own can answer
// each message as soon as its piece is ready. Pushes are zero-copy: the gradient memory is lent to
// ZeroMQ and must not change until WaitBuffersReleased() returns. Pulls copy each reply into the
// destination given to Pull.
//
// Owned by one thread (its sockets are not thread safe). While waiting
// (Wait, WaitAll, WaitBuffersReleased) it calls the idle hook about every
// 50 ms (the worker answers the coordinator there); an error from the
// hook ends the wait.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/base/buffer_pool.h"
#include "common/base/status.h"
#include "common/net/node.h"
#include "common/net/zmq_socket.h"
#include "common/ps/compress.h"
#include "common/ps/keys.h"
#include "worker/weight_source.h"

namespace pstrain {

struct ClientIdentity {
  int worker_id = 0;
  uint64_t incarnation = 0;
  uint64_t membership_epoch = 0;
};

class PsClient : public WeightSource {
 public:
  using Ticket = WeightSource::Ticket;

  static StatusOr<std::unique_ptr<PsClient>> Connect(ZmqContext& ctx, const KeyLayout& keys,
                                                     const std::vector<ServerEntry>& servers,
                                                     const ClientIdentity& identity);
  ~PsClient() override;

  // What a gradient is: which hand-out slot computed it at which clock, how
  // many samples it sums over and the sum of Mix64 of their indices.
  struct GradientTag {
    int slot = 0;
    int64_t clock = 0;
    float lr = 0;
    int64_t samples = 0;
    uint64_t sample_hash = 0;
  };
  // Gradients for the flat interval of `range`; `flat` is the base of a flat
  // gradient array, lent to ZeroMQ until WaitBuffersReleased(). A null
  // `flat` pushes nothing but the fact that the step is done (no samples).
  StatusOr<Ticket> Push(const KeyRange& range, const float* flat, const GradientTag& tag);
  // An empty step: nothing to add at tag.clock for tag.slot, for every key
  // (keeps BSP moving).
  StatusOr<Ticket> PushEmpty(const GradientTag& tag);
  // Weights of `range` once `clock` steps are applied, written into the
  // flat array based at `flat`.
  StatusOr<Ticket> Pull(const KeyRange& range, float* flat, int64_t clock) override;

  // Sparse rows (embedding tables): row r of table t is in row bucket
  // BucketOfRow(t, r, buckets) (common/ps/keys.h), on the server that holds
  // the bucket now. grads / out hold rows.size() * dim floats. A push is
  // named by the slot and clock it was computed for (tag.slot, tag.clock)
  // and applied once under that name; a row request lost with its server,
  // or refused as routed by an older server table, is sent again to the
  // bucket's owner under the same name, so an answered push is never lost
  // and never applied twice.
  StatusOr<Ticket> PushRows(uint32_t table, uint32_t dim, std::span<const uint64_t> rows,
                            const float* grads, const GradientTag& tag);
  StatusOr<Ticket> PullRows(uint32_t table, uint32_t dim, std::span<const uint64_t> rows,
                            float* out);
  // Row buckets in the server table (the job's cluster.servers; 0 for a
  // dense model).
  uint32_t row_buckets() const { return static_cast<uint32_t>(bucket_owner_.size()); }

  // Compressed transfer: gradients as fp16/bf16/top-k (with error feedback:
  // what top-k leaves out is added to the next push of the same keys),
  // weights as fp16/bf16. Call before the first request.
  struct Compression {
    WireType gradients = WireType::kFloat32;
    WireType weights = WireType::kFloat32;
    double topk_ratio = 0.01;
  };
  void SetCompression(const Compression& c);

  Status Wait(Ticket ticket, std::chrono::milliseconds deadline) override;
  // Forgets the requests of `ticket` still in flight: replies that come
  // later are dropped, and nothing is written where a pull would have put
  // its weights.
  void Abandon(Ticket ticket) override;
  Status WaitAll(std::chrono::milliseconds deadline);
  Status WaitBuffersReleased(std::chrono::milliseconds deadline);
  void SetIdleHook(std::function<Status()> hook) { idle_hook_ = std::move(hook); }

  size_t in_flight() const { return requests_.size() + parked_.size(); }
  void set_membership_epoch(uint64_t epoch) { identity_.membership_epoch = epoch; }
  // Adopts a new server table (a backup promoted after a server died):
  // connects to servers it did not know, and fails the requests in flight
  // to servers no longer listed with kAborted (the caller resends).
  Status UpdateRouting(const std::vector<ServerEntry>& servers, uint64_t membership_epoch);

  // Test seam: every request goes out through this function (default: the
  // server's socket). Fault-injection tests duplicate, delay or reorder here.
  using SendFn = std::function<Status(int server, Message& frames)>;
  void SetTransport(std::function<Status(int server, Message& frames, const SendFn& send)> t) {
    transport_ = std::move(t);
  }
  const KeyLayout& keys() const { return keys_; }
  int server_count() const { return static_cast<int>(servers_.size()); }

 private:
  struct ServerConn {
    ServerEntry entry;
    std::unique_ptr<Socket> socket;
    uint64_t next_seq = 0;
  };
  // A row request, kept whole so it can be sent again.
  struct RowRequest {
    bool push = false;
    uint32_t bucket = 0, table = 0, dim = 0, part = 0;
    int slot = 0;
    int64_t clock = 0;
    float lr = 0;
    std::vector<uint64_t> rows;
    std::shared_ptr<std::vector<float>> grads;  // pushes
  };
  struct Request {
    Request(Ticket t, int s, std::string w) : ticket(t), server(s), what(std::move(w)) {}
    Ticket ticket;
    int server;
    std::string what;  // for timeouts: "pull of keys ... at clock 7 from server 1"
    bool push = false;
    float* dest = nullptr;
    size_t dest_floats = 0;
    WireType wire = WireType::kFloat32;  // dense pulls: how the reply is coded
    std::vector<size_t> row_slots;       // sparse pulls: where each row goes in dest
    uint32_t dim = 0;
    std::shared_ptr<const RowRequest> row;             // row requests
    std::chrono::steady_clock::time_point retry_at{};  // parked: when to send again
    uint64_t order = 0;  // row requests: the id it was first sent with
  };
  struct TicketState {
    int remaining = 0;
    Status status;
  };

  PsClient(const KeyLayout& keys, const ClientIdentity& id) : keys_(keys), identity_(id) {}
  StatusOr<ServerConn> Open(ZmqContext& ctx, const ServerEntry& e);
  Ticket NewTicket();
  // The payload of a push of flat[f]: the floats themselves, or coded.
  Frame CodeGradient(const float* flat, const FlatRange& f, msg::DataHeader::Builder h);
  // The pieces of `range` that `server` owns, each at most kMaxPayloadBytes.
  std::vector<KeyRange> Parts(const KeyRange& range, int server) const;
  // Row indices grouped by bucket, at most kMaxPayloadBytes of rows each.
  StatusOr<std::vector<std::pair<uint32_t, std::vector<size_t>>>> RowGroups(
      uint32_t table, uint32_t dim, std::span<const uint64_t> rows) const;
  // Which server (index in servers_) holds each row bucket.
  Status IndexBuckets();
  // `counted`: a request sent again, counted in its ticket already.
  Status SendRequest(int server, Request request, capnp::MessageBuilder& header, Message payload,
                     bool counted = false);
  // Sends r (a row request) to its bucket's owner under a new request id;
  // `again`: it was counted in its ticket already.
  Status SendRows(Request r, bool again);
  // Sends the parked row requests that are due (all: `now` is max).
  Status SendParked(std::chrono::steady_clock::time_point now);
  void FillHeader(msg::DataHeader::Builder h, int server, uint64_t request_id);
  // Receives whatever replies are waiting (up to `timeout` for the first).
  Status Receive(std::chrono::milliseconds timeout);
  void OnReply(int server, Message& frames);
  void Finish(uint64_t request_id, const Status& s);

  ZmqContext* ctx_ = nullptr;
  KeyLayout keys_;
  ClientIdentity identity_;
  std::vector<ServerConn> servers_;
  std::map<uint64_t, Request> requests_;
  std::vector<Request> parked_;    // row requests refused as routed by an old table
  std::vector<int> bucket_owner_;  // row bucket -> index in servers_
  std::map<Ticket, TicketState> tickets_;
  uint64_t next_request_ = 1;
  Ticket next_ticket_ = 1;
  std::shared_ptr<const int> lent_token_ = std::make_shared<const int>(0);
  // Compression state, over the flat parameter array: coded gradients (lent
  // like the gradients themselves) and top-k's residuals.
  Compression compression_;
  std::vector<uint16_t> coded16_;
  std::vector<uint32_t> coded_topk_;  // per range at 2 * its flat offset: indices, values
  std::vector<float> residual_;
  std::vector<float> topk_values_, topk_scratch_;
  std::vector<uint16_t> reply16_;
  VectorPool<float> row_pushes_;  // gathered row gradients, lent to ZeroMQ
  std::function<Status()> idle_hook_;
  std::function<Status(int, Message&, const SendFn&)> transport_;
  std::vector<float> scratch_;
  // The first push a server refused for a reason other than a membership
  // change: every later Wait reports it, so a step cannot wait forever for
  // a gradient that will never be applied.
  Status failed_push_;
};

}  // namespace pstrain
