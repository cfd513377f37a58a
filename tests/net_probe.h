// Test helper: does a ZeroMQ listener let this client in? Connects one
// DEALER (optionally as a CurveZMQ client with given keys) and watches the
// socket's own monitor until the ZMTP handshake succeeds or fails.
#pragma once

#include <zmq.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

namespace pstrain::testing {

struct ProbeIdentity {
  bool curve = false;      // false: ZeroMQ's NULL mechanism (no key at all)
  std::string server_key;  // Z85: the listener's public key as the client believes it
  std::string public_key;  // Z85: the client's own long-term pair
  std::string secret_key;
};

enum class ProbeResult { kAdmitted, kRefused, kNoAnswer };

inline const char* ToString(ProbeResult r) {
  switch (r) {
    case ProbeResult::kAdmitted:
      return "admitted";
    case ProbeResult::kRefused:
      return "refused";
    case ProbeResult::kNoAnswer:
      return "no answer";
  }
  return "?";
}

inline ProbeResult ProbeHandshake(const std::string& endpoint, const ProbeIdentity& id,
                                  std::chrono::seconds deadline = std::chrono::seconds(60)) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_DEALER);
  const int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  if (id.curve) {
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, id.server_key.c_str(), 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, id.public_key.c_str(), 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, id.secret_key.c_str(), 40);
  }
  zmq_socket_monitor(s, "inproc://probe.monitor", ZMQ_EVENT_ALL);
  void* mon = zmq_socket(ctx, ZMQ_PAIR);
  zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(mon, "inproc://probe.monitor");
  zmq_connect(s, endpoint.c_str());
  ProbeResult result = ProbeResult::kNoAnswer;
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (result == ProbeResult::kNoAnswer && std::chrono::steady_clock::now() < until) {
    zmq_pollitem_t item{mon, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 100) <= 0) continue;
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    zmq_msg_recv(&ev, mon, 0);
    uint16_t event = 0;
    if (zmq_msg_size(&ev) >= 2) std::memcpy(&event, zmq_msg_data(&ev), 2);
    while (zmq_msg_more(&ev) != 0) zmq_msg_recv(&ev, mon, 0);  // the address frame
    zmq_msg_close(&ev);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) result = ProbeResult::kAdmitted;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
        event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
        event == ZMQ_EVENT_DISCONNECTED) {
      result = ProbeResult::kRefused;
    }
  }
  zmq_socket_monitor(s, nullptr, 0);
  zmq_close(mon);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return result;
}

}  // namespace pstrain::testing
