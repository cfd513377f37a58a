#include "common/net/zmq_socket.h"

#include <cstring>
#include <zmq.hpp>

namespace pstrain {
namespace {

Status FromZmq(const zmq::error_t& e, const std::string& what) {
  if (e.num() == EAGAIN || e.num() == EHOSTUNREACH) return Unavailable(what + ": " + e.what());
  if (e.num() == ETERM) return Cancelled(what + ": context closed");
  return Internal(what + ": " + e.what());
}

void ReleaseShared(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

}  // namespace

Frame::Frame() { zmq_msg_init(&msg_); }
Frame::~Frame() { zmq_msg_close(&msg_); }
Frame::Frame(Frame&& other) noexcept {
  zmq_msg_init(&msg_);
  zmq_msg_move(&msg_, &other.msg_);
}
Frame& Frame::operator=(Frame&& other) noexcept {
  if (this != &other) zmq_msg_move(&msg_, &other.msg_);
  return *this;
}

Frame Frame::Copy(const void* data, size_t size) {
  Frame f;
  zmq_msg_close(&f.msg_);
  zmq_msg_init_size(&f.msg_, size);
  if (size > 0) std::memcpy(zmq_msg_data(&f.msg_), data, size);
  return f;
}

Frame Frame::Share(const void* data, size_t size, std::shared_ptr<const void> keep_alive) {
  Frame f;
  zmq_msg_close(&f.msg_);
  auto* hint = new std::shared_ptr<const void>(std::move(keep_alive));
  zmq_msg_init_data(&f.msg_, const_cast<void*>(data), size, &ReleaseShared, hint);
  return f;
}

const uint8_t* Frame::data() const {
  return static_cast<const uint8_t*>(zmq_msg_data(const_cast<zmq_msg_t*>(&msg_)));
}
size_t Frame::size() const { return zmq_msg_size(&msg_); }

const float* FramedFloats(const Frame& f, std::vector<float>* scratch) {
  if (reinterpret_cast<uintptr_t>(f.data()) % alignof(float) == 0) {
    return reinterpret_cast<const float*>(f.data());
  }
  scratch->resize(f.size() / sizeof(float));
  std::memcpy(scratch->data(), f.data(), scratch->size() * sizeof(float));
  return scratch->data();
}

ZmqContext::ZmqContext() : ctx_(std::make_unique<zmq::context_t>(1)) {}
ZmqContext::~ZmqContext() = default;

Socket::Socket(std::unique_ptr<zmq::socket_t> s) : socket_(std::move(s)) {}
Socket::~Socket() = default;

StatusOr<std::unique_ptr<Socket>> Socket::Create(ZmqContext& ctx, SocketKind kind,
                                                 const SocketOptions& o) {
  try {
    auto s = std::make_unique<zmq::socket_t>(ctx.get(), kind == SocketKind::kRouter
                                                            ? zmq::socket_type::router
                                                            : zmq::socket_type::dealer);
    s->set(zmq::sockopt::linger, o.linger_ms);
    s->set(zmq::sockopt::maxmsgsize, o.max_message_bytes);
    s->set(zmq::sockopt::sndhwm, o.send_hwm);
    s->set(zmq::sockopt::rcvhwm, o.recv_hwm);
    if (o.heartbeat_ms > 0) {
      s->set(zmq::sockopt::heartbeat_ivl, o.heartbeat_ms);
      s->set(zmq::sockopt::heartbeat_timeout, o.heartbeat_ms * 3);
    }
    if (kind == SocketKind::kRouter) s->set(zmq::sockopt::router_mandatory, 1);
    if (!o.identity.empty()) s->set(zmq::sockopt::routing_id, o.identity);
    return std::unique_ptr<Socket>(new Socket(std::move(s)));
  } catch (const zmq::error_t& e) {
    return FromZmq(e, "creating a socket");
  }
}

StatusOr<std::string> Socket::Bind(const std::string& endpoint) {
  try {
    socket_->bind(endpoint);
    return socket_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Unavailable("cannot bind " + endpoint + ": " + e.what());
  }
}

Status Socket::Connect(const std::string& endpoint) {
  try {
    socket_->connect(endpoint);
    return OkStatus();
  } catch (const zmq::error_t& e) {
    return InvalidArgument("cannot connect to " + endpoint + ": " + e.what());
  }
}

Status Socket::Disconnect(const std::string& endpoint) {
  try {
    socket_->disconnect(endpoint);
    return OkStatus();
  } catch (const zmq::error_t& e) {
    return FromZmq(e, "disconnecting " + endpoint);
  }
}

Status Socket::Send(Message& frames, bool dontwait) {
  for (size_t i = 0; i < frames.size(); ++i) {
    int flags = (i + 1 < frames.size() ? ZMQ_SNDMORE : 0) | (dontwait ? ZMQ_DONTWAIT : 0);
    if (zmq_msg_send(frames[i].raw(), socket_->handle(), flags) < 0) {
      const int err = zmq_errno();
      if (err == EAGAIN || err == EHOSTUNREACH) {
        return Unavailable(std::string("send failed: ") + zmq_strerror(err));
      }
      if (err == ETERM) return Cancelled("send failed: context closed");
      return Internal(std::string("send failed: ") + zmq_strerror(err));
    }
  }
  frames.clear();
  return OkStatus();
}

StatusOr<bool> Socket::Recv(Message* frames, size_t max_frames) {
  frames->clear();
  bool too_many = false;
  while (true) {
    Frame f;
    const int flags = frames->empty() && !too_many ? ZMQ_DONTWAIT : 0;
    if (zmq_msg_recv(f.raw(), socket_->handle(), flags) < 0) {
      const int err = zmq_errno();
      if (err == EAGAIN) return false;
      if (err == ETERM) return Cancelled("receive: context closed");
      return Internal(std::string("receive failed: ") + zmq_strerror(err));
    }
    const bool more = zmq_msg_more(f.raw()) != 0;
    if (frames->size() < max_frames) {
      frames->push_back(std::move(f));
    } else {
      too_many = true;
    }
    if (!more) break;
  }
  if (too_many) {
    return InvalidArgument("message has more than " + std::to_string(max_frames) + " frames");
  }
  return true;
}

StatusOr<bool> Socket::WaitReadable(std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::vector<bool> r, PollReadable({this}, timeout));
  return static_cast<bool>(r[0]);
}

void* Socket::handle() { return socket_->handle(); }

StatusOr<std::vector<bool>> PollReadable(const std::vector<Socket*>& sockets,
                                         std::chrono::milliseconds timeout) {
  std::vector<zmq_pollitem_t> items;
  for (Socket* s : sockets) items.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
  if (zmq_poll(items.data(), static_cast<int>(items.size()), static_cast<long>(timeout.count())) <
      0) {
    const int err = zmq_errno();
    if (err == EINTR) return std::vector<bool>(sockets.size(), false);
    if (err == ETERM) return Cancelled("poll: context closed");
    return Internal(std::string("poll failed: ") + zmq_strerror(err));
  }
  std::vector<bool> out;
  for (const zmq_pollitem_t& i : items) out.push_back((i.revents & ZMQ_POLLIN) != 0);
  return out;
}

std::string TcpWildcardEndpoint(const std::string& address) { return "tcp://" + address + ":*"; }

}  // namespace pstrain
