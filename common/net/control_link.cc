#include "common/net/control_link.h"

#include <capnp/message.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>

#include "common/base/logging.h"

namespace pstrain {
namespace {

using Clock = std::chrono::steady_clock;

int64_t Nanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int64_t MillisBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// The kind of a control message; ERROR for one that does not decode (the
// main thread's Drain names the problem).
msg::Control::Which KindOf(const Frame& f) {
  msg::Control::Which kind = msg::Control::ERROR;
  (void)WithDecoded<msg::Control>(f, [&](msg::Control::Reader c) -> Status {
    kind = c.which();
    return OkStatus();
  });
  return kind;
}

constexpr size_t kMaxHeld = 10000;  // messages held while orphaned

}  // namespace

StatusOr<std::unique_ptr<ControlLink>> ControlLink::Start(ZmqContext& ctx,
                                                          std::unique_ptr<Socket> dealer,
                                                          const ControlLinkOptions& options) {
  auto link = std::unique_ptr<ControlLink>(new ControlLink());
  link->options_ = options;
  link->dealer_ = std::move(dealer);
  SocketOptions o;
  o.heartbeat_ms = 0;
  o.max_message_bytes = -1;  // the DEALER already bounds what comes in
  o.send_hwm = o.recv_hwm = 0;
  // A name of its own: an endpoint of a link just closed may not be free yet.
  static std::atomic<uint64_t> links{0};
  const std::string name = "inproc://pstrain-control-" + std::to_string(links.fetch_add(1));
  ASSIGN_OR_RETURN(link->link_end_, Socket::Create(ctx, SocketKind::kPair, o));
  RETURN_IF_ERROR(link->link_end_->Bind(name).status());
  ASSIGN_OR_RETURN(link->main_end_, Socket::Create(ctx, SocketKind::kPair, o));
  RETURN_IF_ERROR(link->main_end_->Connect(name));
  const auto now = Clock::now();
  link->last_heard_ = now;
  link->main_seen_ns_ = Nanos(now);
  link->membership_epoch_ = options.membership_epoch;
  // The thread takes no signal: the main thread's handlers and waits see
  // them as before.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  link->thread_ = std::thread([l = link.get()] { l->Run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return link;
}

ControlLink::~ControlLink() {
  if (thread_.joinable()) {
    Message stop;
    stop.push_back(Frame());  // an empty frame: no control message is empty
    // If this fails the context is closing, and the thread's poll ends too.
    (void)main_end_->Send(stop);
    thread_.join();
  }
}

void ControlLink::Run() {
  while (true) {
    const auto now = Clock::now();
    const auto next_beat = last_sent_ + options_.heartbeat;
    const auto wait =
        std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(next_beat - now),
                   std::chrono::milliseconds(1), std::chrono::milliseconds(100));
    // With messages ZeroMQ would not take yet, look again soon.
    StatusOr<std::vector<bool>> ready = PollReadable(
        {dealer_.get(), link_end_.get()}, outbox_.empty() ? wait : std::chrono::milliseconds(5));
    if (!ready.ok()) {
      Fail(ready.status());
      return;
    }
    if (!Turn(Clock::now())) return;
  }
}

bool ControlLink::Turn(Clock::time_point now) {
  // The whole process stood still (stopped, swapped out): the silence was
  // ours. Say we are back at once and give the coordinator a timeout to be
  // heard, so a node it declared dead hears that rather than guessing.
  if (last_turn_ != Clock::time_point{} && now - last_turn_ > options_.timeout / 2) {
    last_heard_ = now;
    last_sent_ = {};
  }
  last_turn_ = now;
  FromCoordinator(now);
  const bool go_on = FromMain();
  if (orphaned_) {
    if (now - last_sent_ >= options_.heartbeat) SendRejoin(now);
    if (now - orphan_since_ > options_.grace) {
      Fail(Unavailable("the coordinator at " + options_.coordinator + " has been silent for " +
                       std::to_string(MillisBetween(last_heard_, now)) +
                       " ms, and none came back within the grace period of " +
                       std::to_string(options_.grace.count() / 1000) + " s"));
    }
    return go_on;
  }
  Flush();
  if (now - last_sent_ >= options_.heartbeat) SendHeartbeat(now);
  if (now - last_heard_ > options_.timeout) {
    if (options_.grace.count() > 0) {
      Orphan(now);
    } else {
      Fail(Unavailable("the coordinator at " + options_.coordinator + " has been silent for " +
                       std::to_string(MillisBetween(last_heard_, now)) + " ms"));
    }
  }
  if (!go_on) {
    Flush();
    if (!outbox_.empty()) {
      PSTRAIN_LOG(WARNING) << "control: " << outbox_.size()
                           << " message(s) to the coordinator not sent at exit";
    }
  }
  return go_on;
}

void ControlLink::FromCoordinator(Clock::time_point now) {
  for (int i = 0; i < 1000; ++i) {
    Message frames;
    StatusOr<bool> got = dealer_->Recv(&frames, 1);
    if (!got.ok()) {
      if (got.status().code() != StatusCode::kInvalidArgument) {
        Fail(got.status());
        return;
      }
      PSTRAIN_LOG(WARNING) << "control: dropped a bad message: " << got.status().message();
      continue;
    }
    if (!*got) return;
    const msg::Control::Which kind = KindOf(frames[0]);
    if (kind == msg::Control::REJOIN_ASK) {
      // A coordinator that does not know this node answers at its address:
      // the one it knew is gone, whether or not it noticed yet.
      if (!orphaned_) Orphan(now);
      SendRejoin(now);
      continue;
    }
    if (orphaned_) {
      if (kind == msg::Control::ADOPTED) {
        PSTRAIN_LOG(INFO) << "adopted by the coordinator at " << options_.coordinator << "; "
                          << held_.size() << " message(s) meant for the one before were dropped";
        held_.clear();
        orphaned_ = false;
      } else if (kind == msg::Control::HEARTBEAT) {
        PSTRAIN_LOG(INFO) << "the coordinator at " << options_.coordinator
                          << " is back; sending the " << held_.size() << " message(s) held";
        for (Message& m : held_) outbox_.push_back(std::move(m));
        held_.clear();
        orphaned_ = false;
        last_heard_ = now;
        continue;
      } else if (kind != msg::Control::SHUTDOWN) {
        continue;  // meant for a node of the coordinator's: this one is not yet
      }
    }
    last_heard_ = now;
    if (kind == msg::Control::HEARTBEAT) continue;
    Status s = link_end_->Send(frames);
    if (!s.ok()) Fail(s);
  }
}

void ControlLink::Orphan(Clock::time_point now) {
  orphaned_ = true;
  orphan_since_ = now;
  for (Message& m : outbox_) held_.push_back(std::move(m));
  outbox_.clear();
  PSTRAIN_LOG(WARNING) << "the coordinator at " << options_.coordinator << " has been silent for "
                       << MillisBetween(last_heard_, now)
                       << " ms: this node keeps its state and waits up to "
                       << options_.grace.count() / 1000
                       << " s for a coordinator to answer there (restart the job with the same "
                          "command and --resume)";
}

void ControlLink::SendNow(capnp::MessageBuilder& m, Clock::time_point now) {
  Message frames;
  frames.push_back(EncodeFrame(m));
  last_sent_ = now;
  Status s = dealer_->Send(frames, /*dontwait=*/true);
  // A full queue: the coordinator is not reading; this one is skipped.
  if (!s.ok() && s.code() != StatusCode::kUnavailable) Fail(s);
}

void ControlLink::SendRejoin(Clock::time_point now) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<msg::Control>().initRejoin();
  r.setRole(options_.role);
  r.setNodeId(options_.node_id);
  r.setIncarnation(options_.incarnation);
  r.setHost(options_.host);
  r.setPid(options_.pid);
  r.setDataEndpoint(options_.data_endpoint);
  r.setLocalEndpoint(options_.local_endpoint);
  r.setHostKey(options_.host_key);
  r.setLaunchToken(options_.launch_token);
  r.setMembershipEpoch(membership_epoch_.load(std::memory_order_relaxed));
  SendNow(m, now);
}

bool ControlLink::FromMain() {
  for (int i = 0; i < 1000; ++i) {
    Message frames;
    StatusOr<bool> got = link_end_->Recv(&frames, 1);
    if (!got.ok()) {
      Fail(got.status());
      return true;
    }
    if (!*got) return true;
    if (frames[0].size() == 0) return false;
    if (orphaned_) {
      if (held_.size() >= kMaxHeld) held_.pop_front();
      held_.push_back(std::move(frames));
      continue;
    }
    outbox_.push_back(std::move(frames));
  }
  return true;
}

void ControlLink::Flush() {
  while (!outbox_.empty()) {
    Status s = dealer_->Send(outbox_.front(), /*dontwait=*/true);
    if (s.code() == StatusCode::kUnavailable) return;  // queue full: later
    if (!s.ok()) {
      Fail(s);
      return;
    }
    outbox_.pop_front();
    last_sent_ = Clock::now();
  }
}

void ControlLink::SendHeartbeat(Clock::time_point now) {
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<msg::Control>().initHeartbeat();
  h.setNodeId(options_.node_id);
  h.setIncarnation(options_.incarnation);
  h.setRole(options_.role);
  const int64_t idle_ms = (Nanos(now) - main_seen_ns_.load(std::memory_order_relaxed)) / 1000000;
  h.setComputeIdleMs(static_cast<uint32_t>(std::clamp<int64_t>(idle_ms, 0, UINT32_MAX)));
  SendNow(m, now);
}

void ControlLink::Fail(Status s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failure_.ok()) failure_ = std::move(s);
}

void ControlLink::SeenMain() {
  main_seen_ns_.store(Nanos(Clock::now()), std::memory_order_relaxed);
}

Status ControlLink::Send(capnp::MessageBuilder& message) {
  SeenMain();
  Message frames;
  frames.push_back(EncodeFrame(message));
  return main_end_->Send(frames);
}

Status ControlLink::Drain(const std::function<Status(msg::Control::Reader)>& fn) {
  SeenMain();
  while (true) {
    Message frames;
    ASSIGN_OR_RETURN(bool got, main_end_->Recv(&frames, 1));
    if (!got) return OkStatus();
    RETURN_IF_ERROR(WithDecoded<msg::Control>(frames[0], [&](msg::Control::Reader c) -> Status {
      // What a Rejoin will say: the newest membership this node was given.
      uint64_t epoch = 0;
      if (c.which() == msg::Control::MEMBERSHIP) epoch = c.getMembership().getMembershipEpoch();
      if (c.which() == msg::Control::ROUTING) epoch = c.getRouting().getMembershipEpoch();
      if (c.which() == msg::Control::ADOPTED) epoch = c.getAdopted().getMembershipEpoch();
      if (epoch > membership_epoch_.load(std::memory_order_relaxed)) {
        membership_epoch_.store(epoch, std::memory_order_relaxed);
      }
      return fn(c);
    }));
  }
}

Status ControlLink::Tick() {
  SeenMain();
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

}  // namespace pstrain
