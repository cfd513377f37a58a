// A small HTTP/1.1 server (Boost.Beast over Boost.Asio) that answers GET and
// HEAD requests from one handler. It runs an io_context on a thread of its
// own; the handler is called on that thread only, so it must be safe to call
// while other threads work (the coordinator hands it copies of its state,
// see status_board.h). Requests are small and bounded (8 KiB of headers, no
// body); an idle connection is closed after 10 s.
//
// Destroying the server stops its thread: pending connections are closed,
// and the handler is never called again once the destructor returns.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/base/status.h"

namespace pstrain {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// `path` is the request target without its query string ("/metrics").
using HttpHandler = std::function<HttpResponse(const std::string& path)>;

class HttpServer {
 public:
  // Listens on address:port (port 0: one the system picks) and starts the
  // thread. kInvalidArgument for a bad address, kUnavailable when the port
  // cannot be bound.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& address, int port,
                                                     HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port it listens on.
  int port() const;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pstrain
