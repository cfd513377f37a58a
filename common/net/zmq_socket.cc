#include "common/net/zmq_socket.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <zmq.hpp>

#include "common/base/logging.h"

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

// The ZAP handler (libzmq asks it about every CURVE client before admitting
// it) and a monitor of every listening socket's handshake failures, on one
// thread that owns all their sockets.
class ZmqContext::Guard {
 public:
  Guard(zmq::context_t& ctx, const std::string& job_public_z85, bool zap) : ctx_(ctx) {
    zmq_z85_decode(job_public_, job_public_z85.c_str());
    if (zap) {
      zap_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::rep);
      zap_->set(zmq::sockopt::linger, 0);
      zap_->bind("inproc://zeromq.zap.01");  // before any CURVE socket exists
    }
    thread_ = std::thread([this] { Run(); });
  }
  ~Guard() {
    stop_ = true;
    thread_.join();
  }

  // Reports handshake failures on `socket` (called on the socket's thread).
  void Watch(void* socket) {
    static std::atomic<int> next{0};
    const std::string endpoint =
        "inproc://pstrain.handshakes." + std::to_string(getpid()) + "." + std::to_string(next++);
    if (zmq_socket_monitor(socket, endpoint.c_str(),
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
      PSTRAIN_LOG(WARNING) << "cannot monitor a socket's handshakes: " << zmq_strerror(zmq_errno());
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    new_monitors_.push_back(endpoint);
  }
  int64_t refused() const { return refused_.load(); }

 private:
  void Run() {
    std::vector<std::unique_ptr<zmq::socket_t>> monitors;
    while (!stop_.load()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const std::string& e : new_monitors_) {
          auto m = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pair);
          m->set(zmq::sockopt::linger, 0);
          m->connect(e);
          monitors.push_back(std::move(m));
        }
        new_monitors_.clear();
      }
      std::vector<zmq::pollitem_t> items;
      if (zap_) items.push_back({zap_->handle(), 0, ZMQ_POLLIN, 0});
      for (auto& m : monitors) items.push_back({m->handle(), 0, ZMQ_POLLIN, 0});
      if (zmq_poll(items.data(), static_cast<int>(items.size()), 100) <= 0) continue;
      size_t i = 0;
      if (zap_ && (items[i++].revents & ZMQ_POLLIN) != 0) AnswerZap();
      for (auto it = monitors.begin(); it != monitors.end(); ++i) {
        const bool stopped = (items[i].revents & ZMQ_POLLIN) != 0 && !ReadEvent(**it);
        it = stopped ? monitors.erase(it) : std::next(it);
      }
    }
  }

  static std::vector<zmq::message_t> RecvAll(zmq::socket_t& s) {
    std::vector<zmq::message_t> parts;
    do {
      zmq::message_t m;
      if (!s.recv(m, zmq::recv_flags::dontwait)) break;
      parts.push_back(std::move(m));
    } while (parts.back().more());
    return parts;
  }

  // ZAP 1.0 (RFC 27): version, request id, domain, address, routing id,
  // mechanism, credentials; the reply echoes the request id.
  void AnswerZap() {
    std::vector<zmq::message_t> req = RecvAll(*zap_);
    if (req.empty()) return;
    const bool ours = req.size() >= 7 && req[5].to_string() == "CURVE" && req[6].size() == 32 &&
                      std::memcmp(req[6].data(), job_public_, 32) == 0;
    const std::string address = req.size() > 3 ? req[3].to_string() : "?";
    if (!ours) {
      PSTRAIN_LOG(WARNING) << "refused a connection from " << address
                           << ": its CURVE key is not this job's key";
    }
    const std::string request_id = req.size() > 1 ? req[1].to_string() : "";
    const std::string parts[] = {"1.0",
                                 request_id,
                                 ours ? "200" : "400",
                                 ours ? "OK" : "not this job's key",
                                 ours ? "job" : "",
                                 ""};
    for (size_t i = 0; i < 6; ++i) {
      zap_->send(zmq::buffer(parts[i]),
                 i + 1 < 6 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  // One monitor event: false when the monitored socket closed.
  bool ReadEvent(zmq::socket_t& monitor) {
    std::vector<zmq::message_t> ev = RecvAll(monitor);
    if (ev.size() < 2 || ev[0].size() < 6) return true;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, ev[0].data(), 2);
    std::memcpy(&value, static_cast<const char*>(ev[0].data()) + 2, 4);
    if (event == ZMQ_EVENT_MONITOR_STOPPED) return false;
    const int64_t n = ++refused_;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) return true;  // the ZAP handler logged it
    if (n <= 20 || n % 1000 == 0) {
      PSTRAIN_LOG(WARNING) << "refused a connection on " << ev[1].to_string() << " (" << n
                           << " so far): " << HandshakeError(event, value);
    }
    return true;
  }

  static std::string HandshakeError(uint16_t event, uint32_t value) {
    if (event != ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      return "the handshake failed (" + std::string(zmq_strerror(static_cast<int>(value))) + ")";
    }
    switch (value) {
      case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "the peer does not speak CurveZMQ (no job key)";
      case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "the peer's CURVE hello does not decrypt with this job's key (another key)";
      default:
        return "ZMTP protocol error 0x" + [value] {
          char buf[16];
          std::snprintf(buf, sizeof buf, "%x", value);
          return std::string(buf);
        }() + " (not a pstrain peer with this job's key)";
    }
  }

  zmq::context_t& ctx_;
  uint8_t job_public_[32] = {};
  std::unique_ptr<zmq::socket_t> zap_;
  std::mutex mu_;
  std::vector<std::string> new_monitors_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> refused_{0};
  std::thread thread_;
};

ZmqContext::ZmqContext() : ctx_(std::make_unique<zmq::context_t>(1)) {}
ZmqContext::~ZmqContext() { guard_.reset(); }

Status ZmqContext::EnableCurve(const CurveKeyPair& key, const CurveOptions& options) {
  if (guard_) return InvalidArgument("CurveZMQ is already enabled on this context");
  if (zmq_has("curve") == 0) return Unavailable("this libzmq was built without CURVE");
  try {
    key_ = std::make_unique<CurveKeyPair>(key);
    guard_ = std::make_unique<Guard>(*ctx_, key.public_key, options.zap);
  } catch (const zmq::error_t& e) {
    key_.reset();
    return FromZmq(e, "starting the ZAP handler");
  }
  return OkStatus();
}

const CurveKeyPair* ZmqContext::curve_key() const { return key_.get(); }

int64_t ZmqContext::handshakes_refused() const { return guard_ ? guard_->refused() : 0; }

StatusOr<CurveKeyPair> GenerateCurveKeyPair() {
  char pub[41] = {0}, sec[41] = {0};
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Unavailable(std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{pub, sec};
}

Status WriteJobKeyFile(const std::string& path, const CurveKeyPair& key) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return InvalidArgument(path +
                             " already exists: a job key is never overwritten (remove it "
                             "first, or choose another name)");
    }
    return Unavailable("cannot create " + path + ": " + std::strerror(errno));
  }
  const std::string text =
      "# pstrain job key: the CurveZMQ key pair every node of one job shares.\n"
      "# Whoever holds this file can join the job: keep it private (mode 0600).\n"
      "public = \"" +
      key.public_key + "\"\nsecret = \"" + key.secret_key + "\"\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Unavailable("cannot write " + path + ": " + std::strerror(errno));
  return OkStatus();
}

StatusOr<CurveKeyPair> ReadJobKeyFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return NotFound(path + ": cannot read the job key (" + std::strerror(errno) +
                    "); make one with `pstrain keygen " + path + "`");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return InvalidArgument(path + ": the job key is readable by other users (mode " + mode +
                           "); run chmod 600 " + path);
  }
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open the job key");
  CurveKeyPair key;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const size_t eq = line.find('=');
    std::string name = eq == std::string::npos ? "" : line.substr(start, eq - start);
    name.erase(name.find_last_not_of(" \t") + 1);
    std::string value = eq == std::string::npos ? "" : line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r") + 1);
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (value.size() != 42 || value.front() != '"' || value.back() != '"' ||
        (name != "public" && name != "secret")) {
      return InvalidArgument(where +
                             "expected public = \"...\" or secret = \"...\" with a "
                             "40-character Z85 key");
    }
    value = value.substr(1, 40);
    uint8_t raw[32];
    if (zmq_z85_decode(raw, value.c_str()) == nullptr) {
      return InvalidArgument(where + "the " + name + " key is not valid Z85");
    }
    (name == "public" ? key.public_key : key.secret_key) = value;
  }
  if (key.public_key.empty() || key.secret_key.empty()) {
    return InvalidArgument(path + ": a job key needs both a public and a secret line");
  }
  char derived[41] = {0};
  if (zmq_curve_public(derived, key.secret_key.c_str()) != 0 || key.public_key != derived) {
    return InvalidArgument(path + ": the public key does not belong to the secret key");
  }
  return key;
}

Socket::Socket(std::unique_ptr<zmq::socket_t> s) : socket_(std::move(s)) {}
Socket::~Socket() = default;

StatusOr<std::unique_ptr<Socket>> Socket::Create(ZmqContext& ctx, SocketKind kind,
                                                 const SocketOptions& o) {
  try {
    const zmq::socket_type type = kind == SocketKind::kRouter   ? zmq::socket_type::router
                                  : kind == SocketKind::kDealer ? zmq::socket_type::dealer
                                                                : zmq::socket_type::pair;
    auto s = std::make_unique<zmq::socket_t>(ctx.get(), type);
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
    if (const CurveKeyPair* key = ctx.curve_key(); key != nullptr && kind != SocketKind::kPair) {
      if (kind == SocketKind::kRouter) {
        s->set(zmq::sockopt::curve_server, 1);
        s->set(zmq::sockopt::curve_secretkey, key->secret_key);
        s->set(zmq::sockopt::zap_domain, "pstrain");
        ctx.guard_->Watch(s->handle());
      } else {
        s->set(zmq::sockopt::curve_serverkey, key->public_key);
        s->set(zmq::sockopt::curve_publickey, key->public_key);
        s->set(zmq::sockopt::curve_secretkey, key->secret_key);
      }
    }
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

std::string TcpEndpoint(const std::string& address, int port) {
  return port > 0 ? "tcp://" + address + ":" + std::to_string(port) : TcpWildcardEndpoint(address);
}

}  // namespace pstrain
