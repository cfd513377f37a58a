// The one door to ZeroMQ (net/ is the only code that includes cppzmq).
//
// Frame: one ZeroMQ message part, move-only. Made by copying bytes, or
// without copying from memory that stays valid until ZeroMQ calls the
// release function (zmq_msg_init_data), e.g. a shared_ptr kept alive by the
// frame.
//
// Socket: a ROUTER or DEALER with the options pstrain always wants (bounded
// linger, ROUTER_MANDATORY, a maximum message size, ZMTP heartbeats), and
// CurveZMQ when the context holds a job key.
// Send and receive whole multipart messages; library exceptions become
// Status. A Socket belongs to one thread (ZeroMQ sockets are not thread
// safe); a Context may be shared.
#pragma once

#include <zmq.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace pstrain {

class Frame {
 public:
  Frame();
  ~Frame();
  Frame(Frame&& other) noexcept;
  Frame& operator=(Frame&& other) noexcept;
  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;

  static Frame Copy(const void* data, size_t size);
  static Frame Copy(const std::string& s) { return Copy(s.data(), s.size()); }
  // Zero-copy: `data` must stay valid until ZeroMQ is done, which is while
  // `keep_alive` lives (the frame holds one reference until then).
  static Frame Share(const void* data, size_t size, std::shared_ptr<const void> keep_alive);

  const uint8_t* data() const;
  size_t size() const;
  zmq_msg_t* raw() { return &msg_; }

 private:
  zmq_msg_t msg_;
};

using Message = std::vector<Frame>;

// The frame's bytes as floats: the frame itself when it is float-aligned
// (large ZeroMQ messages are), else a copy in *scratch. size() % 4 == 0.
const float* FramedFloats(const Frame& f, std::vector<float>* scratch);

// A CurveZMQ key pair, both halves Z85-encoded (40 characters each).
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};

struct CurveOptions {
  // The ZAP handler: admits only clients whose long-term public key is the
  // job's. Without it any client that knows the job's public key gets in
  // (tests switch it off to show that their probes can tell).
  bool zap = true;
};

class Socket;

class ZmqContext {
 public:
  ZmqContext();
  ~ZmqContext();
  zmq::context_t& get() { return *ctx_; }

  // From now on every socket made with this context speaks CurveZMQ with
  // the job's key pair: ROUTERs as CURVE servers, DEALERs as clients whose
  // long-term key is the job's own. Starts the ZAP handler (a thread that
  // answers libzmq's authentication requests and logs every refusal).
  // Call before creating sockets.
  Status EnableCurve(const CurveKeyPair& key, const CurveOptions& options = {});
  const CurveKeyPair* curve_key() const;
  // Connections refused at the handshake so far (no key, wrong key, not a
  // CURVE peer): counted on the listening sockets of this context.
  int64_t handshakes_refused() const;

  class Guard;  // the ZAP handler and handshake-failure monitor

 private:
  friend class Socket;
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<CurveKeyPair> key_;
  std::unique_ptr<Guard> guard_;
};

// A fresh key pair (libzmq's CSPRNG).
StatusOr<CurveKeyPair> GenerateCurveKeyPair();
// The job key file: two `name = "Z85"` lines and a comment, mode 0600.
// Refuses to overwrite an existing file.
Status WriteJobKeyFile(const std::string& path, const CurveKeyPair& key);
// Reads and checks a job key file: both keys present and well-formed, the
// public key derived from the secret one, and the file not readable by
// group or others.
StatusOr<CurveKeyPair> ReadJobKeyFile(const std::string& path);

// kPair: one end of an inproc:// pipe between two threads of this process
// (never CURVE, no ZMTP heartbeats).
enum class SocketKind { kRouter, kDealer, kPair };

struct SocketOptions {
  // Largest message the socket accepts (ZMQ_MAXMSGSIZE); bigger ones drop
  // the connection. -1: unlimited.
  int64_t max_message_bytes = 64 << 20;
  int linger_ms = 200;   // how long close() may wait to flush
  int send_hwm = 10000;  // messages queued per peer before sends block
  int recv_hwm = 10000;
  int heartbeat_ms = 1000;  // ZMTP PINGs to notice dead TCP peers
  std::string identity;     // DEALER: routing id the ROUTER sees
};

class Socket {
 public:
  static StatusOr<std::unique_ptr<Socket>> Create(ZmqContext& ctx, SocketKind kind,
                                                  const SocketOptions& options);
  ~Socket();

  // Binds and returns the endpoint actually bound (a "*" port resolved).
  StatusOr<std::string> Bind(const std::string& endpoint);
  Status Connect(const std::string& endpoint);
  Status Disconnect(const std::string& endpoint);

  // Sends all frames as one multipart message; they are consumed. With
  // dontwait, a full queue gives kUnavailable instead of blocking. On a
  // ROUTER, frames[0] is the peer's routing id; an unknown peer gives
  // kUnavailable (ROUTER_MANDATORY).
  Status Send(Message& frames, bool dontwait = false);
  // Receives one whole multipart message. Returns false when none is
  // waiting (never blocks). Messages with more than max_frames parts are
  // drained and reported as kInvalidArgument.
  StatusOr<bool> Recv(Message* frames, size_t max_frames);

  // Waits until this socket is readable or timeout passes; true if readable.
  StatusOr<bool> WaitReadable(std::chrono::milliseconds timeout);

  void* handle();

 private:
  explicit Socket(std::unique_ptr<zmq::socket_t> s);
  std::unique_ptr<zmq::socket_t> socket_;
};

// Waits until any of `sockets` is readable, at most `timeout`. Returns one
// flag per socket.
StatusOr<std::vector<bool>> PollReadable(const std::vector<Socket*>& sockets,
                                         std::chrono::milliseconds timeout);

// "tcp://127.0.0.1:*" style endpoints for binding on an address.
std::string TcpWildcardEndpoint(const std::string& address);
// tcp://ADDRESS:PORT, or the wildcard for port 0.
std::string TcpEndpoint(const std::string& address, int port);

}  // namespace pstrain
