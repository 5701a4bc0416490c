// Internals of http::Server shared by server.cc and connection.cc (Beast types live here only).
//
// Ownership: Impl::connections holds each Connection until it finishes; async operations hold
// it too. Responders and stream writers hold only weak references, so a handler that answers
// after the client left (or after shutdown) does nothing.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "openrl/http/server.h"

namespace openrl::http::internal {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

// Boost 1.74's Beast uses boost::string_view; these convert at the boundary.
inline std::string_view ToStd(beast::string_view s) { return {s.data(), s.size()}; }
inline beast::string_view ToBeast(std::string_view s) { return {s.data(), s.size()}; }

class Connection;

// Bytes queued by a streaming producer, shared by the writer (any thread) and the connection.
struct StreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::string pending;         // not yet handed to the socket
  bool open = true;            // false: client gone, write failed or server shutting down
  bool producer_done = false;  // the producer closed the stream
};

struct ServerImpl {
  explicit ServerImpl(ServerOptions o);

  // Declared first so it is destroyed last: pending handlers own sockets.
  net::io_context ioc;
  ServerOptions options;
  Router router;
  std::mutex checks_mu;
  std::vector<std::pair<std::string, ReadinessCheck>> checks;

  std::optional<tcp::acceptor> acceptor;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> io_threads;
  std::unique_ptr<net::thread_pool> workers;
  std::atomic<bool> draining{false};
  bool started = false;
  bool stopped = false;
  uint16_t port = 0;

  std::mutex conns_mu;
  std::condition_variable conns_cv;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;

  metrics::Family<metrics::Counter>* requests_total;
  metrics::Family<metrics::Histogram>* request_seconds;
  metrics::Gauge* in_flight;
  metrics::Gauge* open_connections;

  void DoAccept();
  void Remove(Connection* c);
  void InstallBuiltinRoutes();
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, ServerImpl* server, bool reject);
  void Start();
  void OnShutdown();  // posted: close if idle, stop a stream
  void ForceClose();  // posted: close the socket now
  void AbortStreamNow();  // any thread: wake a blocked producer

  // Called on the strand by a Responder.
  void OnResponse(Response res);
  // Called from any thread by the stream writer.
  void PostFlush();
  net::any_io_executor executor() const;

 private:
  enum class State { kIdle, kReading, kHandling, kWriting, kStreaming, kDone };

  void DoReadRequest();
  void ReadHeader();
  void OnHeader(beast::error_code ec);
  void OnBody(beast::error_code ec);
  void Dispatch();
  void ReplyError(Response res);  // writes and then closes the connection
  void Write(Response res);
  void OnWritten(beast::error_code ec, bool close);
  void StartStream(Response res);
  void WatchForDisconnect();
  void FlushStream();
  void LingerClose();
  void Finish();
  void ArmReadTimer();
  void RecordCompletion(int status);
  Response ReadErrorResponse(beast::error_code ec);

  beast::tcp_stream stream_;
  net::any_io_executor strand_;  // the strand the socket was accepted on
  net::steady_timer read_timer_;
  beast::flat_buffer buffer_;
  std::optional<beast::http::request_parser<beast::http::string_body>> parser_;
  ServerImpl* server_;
  bool reject_;
  std::string remote_;

  State state_ = State::kIdle;
  bool timed_out_ = false;
  bool close_after_ = false;
  bool keep_alive_ = true;
  bool head_ = false;
  unsigned version_ = 11;
  bool request_open_ = false;  // counted in in-flight, completion not yet recorded
  std::string method_label_;
  std::string route_label_;
  std::chrono::steady_clock::time_point started_at_;
  std::shared_ptr<Request> request_;
  const Route* route_ = nullptr;

  std::shared_ptr<StreamState> stream_state_;
  bool chunk_in_flight_ = false;
  bool client_gone_ = false;
  int stream_status_ = 200;
};

}  // namespace openrl::http::internal
