#include "worker/ps_client.h"

#include <capnp/message.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "common/base/logging.h"
#include "common/data/handout.h"
#include "common/msg/codec.h"

namespace pstrain {

PsClient::~PsClient() = default;

StatusOr<std::unique_ptr<PsClient>> PsClient::Connect(ZmqContext& ctx, const KeyLayout& keys,
                                                      const std::vector<ServerEntry>& servers,
                                                      const ClientIdentity& identity) {
  if (servers.empty()) return InvalidArgument("no parameter servers to connect to");
  auto c = std::unique_ptr<PsClient>(new PsClient(keys, identity));
  c->ctx_ = &ctx;
  for (const ServerEntry& e : servers) {
    ASSIGN_OR_RETURN(ServerConn conn, c->Open(ctx, e));
    c->servers_.push_back(std::move(conn));
  }
  RETURN_IF_ERROR(c->IndexBuckets());
  return c;
}

Status PsClient::IndexBuckets() {
  std::vector<int> owner;
  for (size_t s = 0; s < servers_.size(); ++s) {
    for (const KeyRange& r : servers_[s].entry.ranges) {
      if (!IsRowBucket(r)) continue;
      const uint32_t b = RowBucketOf(r);
      if (b >= kMaxRowBuckets) return InvalidArgument("row bucket " + std::to_string(b));
      if (owner.size() <= b) owner.resize(b + 1, -1);
      owner[b] = static_cast<int>(s);
    }
  }
  for (size_t b = 0; b < owner.size(); ++b) {
    if (owner[b] < 0) {
      return InvalidArgument("the server table gives row bucket " + std::to_string(b) +
                             " to no server");
    }
  }
  bucket_owner_ = std::move(owner);
  return OkStatus();
}

StatusOr<PsClient::ServerConn> PsClient::Open(ZmqContext& ctx, const ServerEntry& e) {
  SocketOptions o;
  o.max_message_bytes = static_cast<int64_t>(kMaxDataFrameBytes);
  ASSIGN_OR_RETURN(std::unique_ptr<Socket> s, Socket::Create(ctx, SocketKind::kDealer, o));
  RETURN_IF_ERROR(s->Connect(BestEndpoint(e)));
  return ServerConn{e, std::move(s), 0};
}

Status PsClient::UpdateRouting(const std::vector<ServerEntry>& servers, uint64_t membership_epoch) {
  std::vector<ServerConn> next;
  std::map<int, int> index;  // server id -> position in `next`
  for (const ServerEntry& e : servers) {
    auto old = std::find_if(servers_.begin(), servers_.end(), [&](const ServerConn& c) {
      return c.entry.id == e.id && c.entry.endpoint == e.endpoint && c.socket;
    });
    if (old != servers_.end()) {
      old->entry = e;
      next.push_back(std::move(*old));
    } else {
      ASSIGN_OR_RETURN(ServerConn conn, Open(*ctx_, e));
      next.push_back(std::move(conn));
    }
    index[e.id] = static_cast<int>(next.size()) - 1;
  }
  std::vector<uint64_t> lost;
  for (auto& [id, r] : requests_) {
    const int server_id = servers_[r.server].entry.id;
    auto it = index.find(server_id);
    if (it == index.end()) {
      lost.push_back(id);
    } else {
      r.server = it->second;
    }
  }
  std::vector<int> gone_ids;
  for (uint64_t id : lost) gone_ids.push_back(servers_[requests_.at(id).server].entry.id);
  servers_ = std::move(next);
  identity_.membership_epoch = membership_epoch;
  RETURN_IF_ERROR(IndexBuckets());
  // Row requests go to their bucket's new owner, in the order they were
  // first sent: applied there once, whether or not the dead server had
  // passed them on.
  std::vector<Request> again = std::move(parked_);
  parked_.clear();
  for (size_t i = 0; i < lost.size(); ++i) {
    auto it = requests_.find(lost[i]);
    if (it->second.row != nullptr) {
      again.push_back(std::move(it->second));
      requests_.erase(it);
      continue;
    }
    Finish(lost[i], Aborted("server " + std::to_string(gone_ids[i]) + " is gone"));
  }
  std::sort(again.begin(), again.end(),
            [](const Request& a, const Request& b) { return a.order < b.order; });
  for (Request& r : again) RETURN_IF_ERROR(SendRows(std::move(r), true));
  return OkStatus();
}

PsClient::Ticket PsClient::NewTicket() {
  const Ticket t = next_ticket_++;
  tickets_[t] = TicketState{};
  return t;
}

void PsClient::FillHeader(msg::DataHeader::Builder h, int server, uint64_t request_id) {
  (void)server;
  h.setRequestId(request_id);
  h.setWorkerId(identity_.worker_id);
  h.setIncarnation(identity_.incarnation);
  h.setMembershipEpoch(identity_.membership_epoch);
}

Status PsClient::SendRequest(int server, Request request, capnp::MessageBuilder& header,
                             Message payload, bool counted) {
  const uint64_t id = header.getRoot<msg::DataHeader>().getRequestId();
  Message frames;
  frames.push_back(EncodeFrame(header));
  for (Frame& f : payload) frames.push_back(std::move(f));
  const SendFn send = [this](int to, Message& m) { return servers_[to].socket->Send(m); };
  RETURN_IF_ERROR(
      (transport_ ? transport_(server, frames, send) : send(server, frames))
          .WithContext("sending to server " + std::to_string(servers_[server].entry.id)));
  if (!counted) tickets_[request.ticket].remaining++;
  requests_.emplace(id, std::move(request));
  return OkStatus();
}

void PsClient::SetCompression(const Compression& c) {
  compression_ = c;
  const size_t floats = keys_.blocks().empty() ? 0 : keys_.blocks().back().flat_end;
  if (c.gradients == WireType::kFloat16 || c.gradients == WireType::kBfloat16) {
    coded16_.assign(floats, 0);
  }
  if (c.gradients == WireType::kTopK) {
    coded_topk_.assign(2 * floats, 0);
    residual_.assign(floats, 0.0f);
  }
}

Frame PsClient::CodeGradient(const float* flat, const FlatRange& f, msg::DataHeader::Builder h) {
  const size_t n = f.size();
  h.setDtype(static_cast<msg::DType>(compression_.gradients));
  switch (compression_.gradients) {
    case WireType::kFloat16:
    case WireType::kBfloat16:
      (compression_.gradients == WireType::kFloat16 ? FloatToHalf : FloatToBf16)(
          flat + f.begin, coded16_.data() + f.begin, n);
      return Frame::Share(coded16_.data() + f.begin, n * 2, lent_token_);
    case WireType::kTopK: {
      const size_t k = std::clamp<size_t>(
          static_cast<size_t>(std::ceil(compression_.topk_ratio * static_cast<double>(n))), 1, n);
      // Room for 2k entries: indices first, the values right after them.
      const size_t cap = std::min(n, 2 * k);
      uint32_t* out = coded_topk_.data() + 2 * f.begin;
      topk_values_.resize(cap);
      const size_t count = TopKWithFeedback(flat + f.begin, residual_.data() + f.begin, n, k, cap,
                                            out, topk_values_.data(), &topk_scratch_);
      std::memcpy(out + count, topk_values_.data(), count * sizeof(float));
      return Frame::Share(out, 8 * count, lent_token_);
    }
    case WireType::kFloat32:
      break;
  }
  return Frame::Share(flat + f.begin, n * sizeof(float), lent_token_);
}

std::vector<KeyRange> PsClient::Parts(const KeyRange& range, int server) const {
  std::vector<KeyRange> parts;
  for (const KeyRange& owned : servers_[server].entry.ranges) {
    const KeyRange part = KeyLayout::Intersect(range, owned);
    if (part.begin == part.end) continue;
    static_assert(kPieceBlocks * kBlockFloats * sizeof(float) <= kMaxPayloadBytes);
    for (const KeyRange& p : keys_.Pieces(part)) parts.push_back(p);
  }
  return parts;
}

StatusOr<PsClient::Ticket> PsClient::Push(const KeyRange& range, const float* flat,
                                          const GradientTag& tag) {
  const Ticket t = NewTicket();
  for (int s = 0; s < server_count(); ++s) {
    for (const KeyRange& part : Parts(range, s)) {
      const FlatRange f = keys_.Flat(part);
      const uint64_t id = next_request_++;
      capnp::MallocMessageBuilder m;
      auto h = m.initRoot<msg::DataHeader>();
      FillHeader(h, s, id);
      h.setOp(msg::DataOp::PUSH);
      h.setClock(tag.clock);
      h.setSlot(tag.slot);
      h.setSeq(servers_[s].next_seq++);
      h.initKeyRange().setBegin(part.begin);
      h.getKeyRange().setEnd(part.end);
      h.setLr(tag.lr);
      h.setSampleCount(tag.samples);
      h.setSampleHash(tag.sample_hash);
      Message payload;
      if (flat != nullptr) payload.push_back(CodeGradient(flat, f, h));
      h.setPayloadFrames(static_cast<uint32_t>(payload.size()));
      Request r{t, s,
                std::string(flat != nullptr ? "push" : "empty push") + " of keys " +
                    ToString(part) + " for slot " + std::to_string(tag.slot) + " at clock " +
                    std::to_string(tag.clock)};
      r.push = true;
      RETURN_IF_ERROR(SendRequest(s, std::move(r), m, std::move(payload)));
    }
  }
  return t;
}

StatusOr<PsClient::Ticket> PsClient::PushEmpty(const GradientTag& tag) {
  GradientTag empty = tag;
  empty.samples = 0;
  empty.sample_hash = 0;
  return Push(keys_.all(), nullptr, empty);
}

StatusOr<PsClient::Ticket> PsClient::Pull(const KeyRange& range, float* flat, int64_t clock) {
  // Requests end at tensor boundaries: the padding between two tensors is
  // zero, as on the servers.
  size_t covered = keys_.Flat(range).begin;
  for (const KeyRange& piece : keys_.Pieces(range)) {
    const FlatRange f = keys_.Flat(piece);
    std::fill(flat + covered, flat + f.begin, 0.0f);
    covered = f.end;
  }
  const Ticket t = NewTicket();
  for (int s = 0; s < server_count(); ++s) {
    for (const KeyRange& part : Parts(range, s)) {
      const FlatRange f = keys_.Flat(part);
      const uint64_t id = next_request_++;
      capnp::MallocMessageBuilder m;
      auto h = m.initRoot<msg::DataHeader>();
      FillHeader(h, s, id);
      h.setOp(msg::DataOp::PULL);
      h.setClock(clock);
      h.initKeyRange().setBegin(part.begin);
      h.getKeyRange().setEnd(part.end);
      h.setDtype(static_cast<msg::DType>(compression_.weights));
      Request r{t, s, "pull of keys " + ToString(part) + " at clock " + std::to_string(clock)};
      r.dest = flat + f.begin;
      r.dest_floats = f.size();
      r.wire = compression_.weights;
      RETURN_IF_ERROR(SendRequest(s, std::move(r), m, {}));
    }
  }
  return t;
}

StatusOr<std::vector<std::pair<uint32_t, std::vector<size_t>>>> PsClient::RowGroups(
    uint32_t table, uint32_t dim, std::span<const uint64_t> rows) const {
  if (bucket_owner_.empty()) return InvalidArgument("the server table holds no row buckets");
  const uint32_t buckets = row_buckets();
  std::vector<std::vector<size_t>> by_bucket(buckets);
  for (size_t i = 0; i < rows.size(); ++i) {
    by_bucket[BucketOfRow(table, rows[i], buckets)].push_back(i);
  }
  // At most kMaxPayloadBytes of rows (and their ids) per message.
  const size_t max_rows =
      std::max<size_t>(1, std::min(kMaxPayloadBytes / (std::max<uint32_t>(dim, 1) * sizeof(float)),
                                   kMaxHeaderBytes / 16));
  std::vector<std::pair<uint32_t, std::vector<size_t>>> groups;
  for (uint32_t b = 0; b < buckets; ++b) {
    for (size_t i = 0; i < by_bucket[b].size(); i += max_rows) {
      const size_t end = std::min(by_bucket[b].size(), i + max_rows);
      groups.emplace_back(b, std::vector<size_t>(by_bucket[b].begin() + static_cast<long>(i),
                                                 by_bucket[b].begin() + static_cast<long>(end)));
    }
  }
  return groups;
}

Status PsClient::SendRows(Request r, bool again) {
  const RowRequest& q = *r.row;
  const int s = bucket_owner_.at(q.bucket);
  r.server = s;
  const uint64_t id = next_request_++;
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<msg::DataHeader>();
  FillHeader(h, s, id);
  h.setOp(q.push ? msg::DataOp::PUSH_ROWS : msg::DataOp::PULL_ROWS);
  const KeyRange bucket = RowBucketRange(q.bucket);
  h.initKeyRange().setBegin(bucket.begin);
  h.getKeyRange().setEnd(bucket.end);
  h.setTable(q.table);
  h.setDim(q.dim);
  auto list = h.initRows(static_cast<unsigned>(q.rows.size()));
  for (size_t j = 0; j < q.rows.size(); ++j) list.set(static_cast<unsigned>(j), q.rows[j]);
  Message payload;
  if (q.push) {
    h.setLr(q.lr);
    h.setSlot(q.slot);
    h.setClock(q.clock);
    h.setPart(q.part);
    h.setPayloadFrames(1);
    payload.push_back(Frame::Share(q.grads->data(), q.grads->size() * sizeof(float), q.grads));
  }
  if (!again) r.order = id;
  return SendRequest(s, std::move(r), m, std::move(payload), again);
}

Status PsClient::SendParked(std::chrono::steady_clock::time_point now) {
  if (parked_.empty()) return OkStatus();
  std::vector<Request> due, later;
  for (Request& r : parked_) (r.retry_at <= now ? due : later).push_back(std::move(r));
  parked_ = std::move(later);
  for (Request& r : due) RETURN_IF_ERROR(SendRows(std::move(r), true));
  return OkStatus();
}

StatusOr<PsClient::Ticket> PsClient::PushRows(uint32_t table, uint32_t dim,
                                              std::span<const uint64_t> rows, const float* grads,
                                              const GradientTag& tag) {
  ASSIGN_OR_RETURN(auto groups, RowGroups(table, dim, rows));
  const Ticket t = NewTicket();
  uint32_t index = 0, last_bucket = 0;
  for (auto& [b, group] : groups) {
    if (b != last_bucket) index = 0;
    last_bucket = b;
    auto q = std::make_shared<RowRequest>();
    q->push = true;
    q->bucket = b;
    q->table = table;
    q->dim = dim;
    q->part = (table << 20) | index++;
    q->slot = tag.slot;
    q->clock = tag.clock;
    q->lr = tag.lr;
    // The rows of one bucket are scattered in `grads`: gather them (a copy,
    // into a buffer reused once the push is answered).
    q->grads = row_pushes_.Get(group.size() * dim);
    q->rows.resize(group.size());
    for (size_t j = 0; j < group.size(); ++j) {
      q->rows[j] = rows[group[j]];
      std::memcpy(q->grads->data() + j * dim, grads + group[j] * dim, dim * sizeof(float));
    }
    Request r{t, 0, "row push of table " + std::to_string(table)};
    r.push = true;
    r.row = std::move(q);
    RETURN_IF_ERROR(SendRows(std::move(r), false));
  }
  return t;
}

StatusOr<PsClient::Ticket> PsClient::PullRows(uint32_t table, uint32_t dim,
                                              std::span<const uint64_t> rows, float* out) {
  ASSIGN_OR_RETURN(auto groups, RowGroups(table, dim, rows));
  const Ticket t = NewTicket();
  for (auto& [b, group] : groups) {
    auto q = std::make_shared<RowRequest>();
    q->bucket = b;
    q->table = table;
    q->dim = dim;
    q->rows.resize(group.size());
    for (size_t j = 0; j < group.size(); ++j) q->rows[j] = rows[group[j]];
    Request r{t, 0, "row pull of table " + std::to_string(table)};
    r.dest = out;
    r.dest_floats = group.size() * dim;
    r.row_slots = std::move(group);
    r.dim = dim;
    r.row = std::move(q);
    RETURN_IF_ERROR(SendRows(std::move(r), false));
  }
  return t;
}

void PsClient::Finish(uint64_t request_id, const Status& s) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  TicketState& t = tickets_[it->second.ticket];
  if (!s.ok() && t.status.ok()) t.status = s;
  if (!s.ok() && it->second.push && s.code() != StatusCode::kAborted && failed_push_.ok()) {
    failed_push_ = s;
  }
  --t.remaining;
  requests_.erase(it);
}

void PsClient::OnReply(int server, Message& frames) {
  const std::string who = "server " + std::to_string(servers_[server].entry.id);
  uint64_t request_id = 0;
  Status s = WithDecoded<msg::DataHeader>(frames[0], [&](msg::DataHeader::Reader h) -> Status {
    request_id = h.getRequestId();
    auto it = requests_.find(request_id);
    if (it == requests_.end()) return OkStatus();  // a late reply to a finished request
    Request& r = it->second;
    if (h.getOp() == msg::DataOp::ERROR) {
      const uint8_t code = h.getErrorCode();
      const StatusCode sc = code > 0 && code <= static_cast<uint8_t>(StatusCode::kInternal)
                                ? static_cast<StatusCode>(code)
                                : StatusCode::kInternal;
      if (sc == StatusCode::kAborted && r.row != nullptr) {
        // Routed by a server table one side has not caught up with: sent
        // again with the next table, or shortly.
        r.retry_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
        parked_.push_back(std::move(r));
        requests_.erase(it);
        return OkStatus();
      }
      Finish(request_id, Status(sc, who + " refused " + r.what + ": " + h.getError().cStr()));
      return OkStatus();
    }
    if (h.getOp() != msg::DataOp::REPLY) return InvalidArgument("unexpected op from " + who);
    if (r.dest != nullptr) {
      // Dense weights may come in several frames (one per piece the server
      // keeps), back to back; rows in one.
      size_t bytes = 0;
      for (size_t i = 1; i < frames.size(); ++i) bytes += frames[i].size();
      if (frames.size() < 2 || (!r.row_slots.empty() && frames.size() != 2) ||
          bytes != r.dest_floats * WireBytes(r.wire)) {
        Finish(request_id, Internal(who + " answered " + r.what + " with the wrong size"));
        return OkStatus();
      }
      if (r.wire != WireType::kFloat32) {
        reply16_.resize(r.dest_floats);
        uint8_t* to = reinterpret_cast<uint8_t*>(reply16_.data());
        for (size_t i = 1; i < frames.size(); to += frames[i].size(), ++i) {
          std::memcpy(to, frames[i].data(), frames[i].size());
        }
        (r.wire == WireType::kFloat16 ? HalfToFloat : Bf16ToFloat)(reply16_.data(), r.dest,
                                                                   r.dest_floats);
      } else if (r.row_slots.empty()) {
        uint8_t* to = reinterpret_cast<uint8_t*>(r.dest);
        for (size_t i = 1; i < frames.size(); to += frames[i].size(), ++i) {
          std::memcpy(to, frames[i].data(), frames[i].size());
        }
      } else {
        for (size_t j = 0; j < r.row_slots.size(); ++j) {
          std::memcpy(r.dest + r.row_slots[j] * r.dim, frames[1].data() + j * r.dim * sizeof(float),
                      r.dim * sizeof(float));
        }
      }
    }
    Finish(request_id, OkStatus());
    return OkStatus();
  });
  if (!s.ok()) PSTRAIN_LOG(WARNING) << "bad reply from " << who << ": " << s.message();
}

Status PsClient::Receive(std::chrono::milliseconds timeout) {
  RETURN_IF_ERROR(SendParked(std::chrono::steady_clock::now()));
  std::vector<Socket*> sockets;
  for (ServerConn& c : servers_) sockets.push_back(c.socket.get());
  ASSIGN_OR_RETURN(std::vector<bool> ready, PollReadable(sockets, timeout));
  for (int s = 0; s < server_count(); ++s) {
    if (!ready[s]) continue;
    while (true) {
      Message frames;
      StatusOr<bool> got = servers_[s].socket->Recv(&frames, 4);
      if (!got.ok()) {
        if (got.status().code() != StatusCode::kInvalidArgument) return got.status();
        continue;
      }
      if (!*got) break;
      OnReply(s, frames);
    }
  }
  return OkStatus();
}

Status PsClient::Wait(Ticket ticket, std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  auto last_hook = std::chrono::steady_clock::now();
  while (true) {
    if (!failed_push_.ok()) return failed_push_;
    auto it = tickets_.find(ticket);
    if (it == tickets_.end()) return InvalidArgument("unknown ticket");
    if (it->second.remaining == 0) {
      Status s = it->second.status;
      tickets_.erase(it);
      return s;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) {
      std::string what;
      for (const auto& [id, r] : requests_) {
        if (r.ticket == ticket) {
          what = r.what + " from server " + std::to_string(servers_[r.server].entry.id) + " (" +
                 servers_[r.server].entry.endpoint + ")";
          break;
        }
      }
      return DeadlineExceeded("no answer within " + std::to_string(deadline.count()) + " ms to " +
                              what);
    }
    if (idle_hook_ && now - last_hook > std::chrono::milliseconds(50)) {
      last_hook = now;
      RETURN_IF_ERROR(idle_hook_());
    }
    RETURN_IF_ERROR(Receive(std::chrono::milliseconds(20)));
  }
}

void PsClient::Abandon(Ticket ticket) {
  for (auto it = requests_.begin(); it != requests_.end();) {
    it = it->second.ticket == ticket ? requests_.erase(it) : std::next(it);
  }
  std::erase_if(parked_, [ticket](const Request& r) { return r.ticket == ticket; });
  tickets_.erase(ticket);
}

Status PsClient::WaitAll(std::chrono::milliseconds deadline) {
  std::vector<Ticket> all;
  for (const auto& [t, s] : tickets_) all.push_back(t);
  Status first;
  for (Ticket t : all) {
    Status s = Wait(t, deadline);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Status PsClient::WaitBuffersReleased(std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  auto last_hook = std::chrono::steady_clock::now();
  while (lent_token_.use_count() > 1) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) {
      return DeadlineExceeded("ZeroMQ still holds gradient buffers after " +
                              std::to_string(deadline.count()) + " ms");
    }
    // A server that died holds its messages until the routing changes.
    if (idle_hook_ && now - last_hook > std::chrono::milliseconds(50)) {
      last_hook = now;
      RETURN_IF_ERROR(idle_hook_());
    }
    std::this_thread::yield();
  }
  return OkStatus();
}

}  // namespace pstrain
