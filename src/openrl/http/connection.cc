// One HTTP/1.1 connection: read a request (header first, so the route's body limit applies),
// hand it to the worker pool, write the response, repeat. All members are used on the strand.
#include "openrl/core/log.h"

#include <limits>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "openrl/http/content_encoding.h"
#include "openrl/http/problem.h"
#include "openrl/http/server_internal.h"

namespace openrl::http::internal {
namespace bhttp = beast::http;
namespace {

constexpr size_t kFirstReadBytes = 4096;
constexpr auto kLingerTime = std::chrono::seconds(2);

std::string MethodLabel(std::string_view m) {
  static const char* kKnown[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  for (const char* k : kKnown) {
    if (m == k) return k;
  }
  return "OTHER";
}

bool SafeHeaderText(std::string_view s) {
  return s.find_first_of("\r\n") == std::string_view::npos;
}

// Delivers a handler's response to its connection once; a dropped responder answers 500.
struct ResponderState {
  std::weak_ptr<Connection> conn;
  std::atomic<bool> done{false};
  std::string route;
  void Deliver(Response res) {
    if (done.exchange(true)) return;
    if (auto c = conn.lock()) {
      net::post(c->executor(), [c, r = std::move(res)]() mutable { c->OnResponse(std::move(r)); });
    }
  }
  ~ResponderState() {
    if (!done.load()) {
      OPENRL_LOG_ERROR("http: handler for {} dropped its responder without answering", route);
      Deliver(ProblemResponse(500, "internal", "the handler did not produce a response"));
    }
  }
};

}  // namespace

Connection::Connection(tcp::socket socket, ServerImpl* server, bool reject)
    : stream_(std::move(socket)),
      strand_(stream_.get_executor()),
      read_timer_(strand_),
      server_(server),
      reject_(reject) {
  beast::error_code ec;
  auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Connection::Start() {
  net::post(strand_, [self = shared_from_this()] {
    if (self->reject_) {
      self->method_label_ = "OTHER";
      self->route_label_ = "rejected";
      self->ReplyError(ProblemResponse(503, "too-many-connections",
                                       "the server has reached its connection limit; retry later"));
      return;
    }
    self->DoReadRequest();
  });
}

void Connection::OnShutdown() {
  net::post(strand_, [self = shared_from_this()] {
    if (self->state_ == State::kIdle) {
      self->Finish();
    } else if (self->state_ == State::kStreaming && self->stream_state_) {
      {
        std::lock_guard lock(self->stream_state_->mu);
        self->stream_state_->open = false;
      }
      self->stream_state_->cv.notify_all();
      self->FlushStream();
    }
  });
}

void Connection::ForceClose() {
  net::post(strand_, [self = shared_from_this()] {
    self->client_gone_ = true;
    self->Finish();
  });
}

void Connection::AbortStreamNow() {
  // stream_state_ is set on the strand before any producer runs; reading the pointer here races
  // only with its creation, so callers use this after the io threads have stopped.
  if (auto st = stream_state_) {
    {
      std::lock_guard lock(st->mu);
      st->open = false;
    }
    st->cv.notify_all();
  }
}

void Connection::DoReadRequest() {
  if (server_->draining) return Finish();
  state_ = State::kIdle;
  timed_out_ = false;
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(server_->options.max_header_bytes));
  // The route's limit is applied once the header is read (OnHeader checks Content-Length).
  parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  if (buffer_.size() > 0) return ReadHeader();
  // Idle keep-alive wait: nothing received yet, so a timeout or shutdown just closes.
  stream_.expires_after(server_->options.idle_timeout);
  stream_.async_read_some(buffer_.prepare(kFirstReadBytes),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->stream_.expires_never();
                            if (ec) return self->Finish();
                            self->buffer_.commit(n);
                            self->ReadHeader();
                          });
}

void Connection::ArmReadTimer() {
  read_timer_.expires_after(server_->options.read_timeout);
  read_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // cancelled: the read finished in time
    self->timed_out_ = true;
    beast::error_code ignored;
    self->stream_.socket().cancel(ignored);
  });
}

void Connection::ReadHeader() {
  state_ = State::kReading;
  started_at_ = std::chrono::steady_clock::now();
  ArmReadTimer();
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             self->OnHeader(ec);
                           });
}

Response Connection::ReadErrorResponse(beast::error_code ec) {
  if (timed_out_) {
    return ProblemResponse(408, "request-timeout", "the request was not received within " +
                           std::to_string(server_->options.read_timeout.count()) + " ms");
  }
  if (ec == bhttp::error::header_limit) {
    return ProblemResponse(431, "request-header-fields-too-large",
                           "request header exceeds " +
                               std::to_string(server_->options.max_header_bytes) + " bytes");
  }
  if (ec == bhttp::error::body_limit) {
    return ProblemResponse(413, "payload-too-large", "request body exceeds the limit of this route");
  }
  return ProblemResponse(400, "bad-request", "malformed HTTP request: " + ec.message());
}

void Connection::OnHeader(beast::error_code ec) {
  read_timer_.cancel();
  method_label_ = "OTHER";
  route_label_ = "unmatched";
  if (ec) {
    bool peer_gone = ec == bhttp::error::end_of_stream || ec == net::error::eof ||
                     ec == net::error::connection_reset ||
                     (ec == net::error::operation_aborted && !timed_out_);
    if (peer_gone) return Finish();
    return ReplyError(ReadErrorResponse(ec));
  }
  auto& msg = parser_->get();
  request_ = std::make_shared<Request>();
  Request& req = *request_;
  req.method = std::string(ToStd(msg.method_string()));
  req.target = std::string(ToStd(msg.target()));
  req.remote_address = remote_;
  for (const auto& field : msg) req.headers.Add(ToStd(field.name_string()), ToStd(field.value()));
  version_ = msg.version();
  keep_alive_ = msg.keep_alive();
  head_ = msg.method() == bhttp::verb::head;
  method_label_ = MethodLabel(req.method);
  if (req.target.empty() || req.target.front() != '/') {
    return ReplyError(ProblemResponse(400, "bad-request",
                                      "request target must be an absolute path: " + req.target));
  }
  std::string_view target = req.target;
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  if (q != std::string_view::npos) req.query = ParseQuery(target.substr(q + 1));
  req.path = PercentDecode(raw_path, false);

  Router::Match match = server_->router.Find(req.method, raw_path);
  bool has_body = parser_->chunked() || parser_->content_length().value_or(0) > 0;
  if (!match.route) {
    Response res;
    if (!match.allowed_methods.empty()) {
      std::string allow;
      for (const auto& m : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + m;
      res = ProblemResponse(405, "method-not-allowed",
                            "method " + req.method + " is not allowed on " + req.path +
                                " (allowed: " + allow + ")", req.path);
      res.headers.Set("Allow", allow);
    } else {
      res = ProblemResponse(404, "not-found", "no route for " + req.path, req.path);
    }
    if (has_body) return ReplyError(std::move(res));
    state_ = State::kWriting;
    return Write(std::move(res));
  }
  route_ = match.route;
  route_label_ = route_->pattern;
  req.route = route_->pattern;
  req.path_params = std::move(match.params);

  size_t limit = route_->options.max_body_bytes.value_or(server_->options.max_body_bytes);
  if (parser_->content_length() && *parser_->content_length() > limit) {
    return ReplyError(ProblemResponse(413, "payload-too-large",
                                      "request body of " + std::to_string(*parser_->content_length()) +
                                          " bytes exceeds the limit of " + std::to_string(limit) +
                                          " bytes for " + route_->pattern, req.path));
  }
  parser_->body_limit(limit);
  if (parser_->is_done()) return OnBody({});

  auto read_body = [self = shared_from_this()] {
    self->ArmReadTimer();
    bhttp::async_read(self->stream_, self->buffer_, *self->parser_,
                      [self](beast::error_code ec, size_t) { self->OnBody(ec); });
  };
  auto expect = req.headers.Get("Expect");
  if (expect && EqualsIgnoreCase(*expect, "100-continue")) {
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    stream_.expires_after(server_->options.write_timeout);
    net::async_write(stream_, net::buffer(kContinue),
                     [self = shared_from_this(), read_body](beast::error_code ec, size_t) {
                       self->stream_.expires_never();
                       if (ec) return self->Finish();
                       read_body();
                     });
    return;
  }
  read_body();
}

void Connection::OnBody(beast::error_code ec) {
  read_timer_.cancel();
  if (ec) {
    bool peer_gone = ec == net::error::eof || ec == net::error::connection_reset ||
                     (ec == net::error::operation_aborted && !timed_out_);
    if (peer_gone) return Finish();
    return ReplyError(ReadErrorResponse(ec));
  }
  Request& req = *request_;
  req.body = std::move(parser_->get().body());
  if (auto enc = req.headers.Get("Content-Encoding")) {
    size_t limit = route_->options.max_body_bytes.value_or(server_->options.max_body_bytes);
    Result<std::string> decoded = DecodeContent(*enc, std::move(req.body), limit);
    if (!decoded.ok()) {
      const Status& s = decoded.status();
      if (s.code() == ErrorCode::kUnimplemented) {
        return Write(ProblemResponse(415, "unsupported-media-type", s.message(), req.path));
      }
      state_ = State::kWriting;
      return Write(ProblemFromStatus(s, req.path));
    }
    req.body = std::move(decoded).value();
    req.headers.Remove("Content-Encoding");
  }
  Dispatch();
}

void Connection::Dispatch() {
  state_ = State::kHandling;
  request_open_ = true;
  server_->in_flight->Inc();
  auto responder_state = std::make_shared<ResponderState>();
  responder_state->conn = weak_from_this();
  responder_state->route = route_->method + " " + route_->pattern;
  Responder respond = [responder_state](Response res) { responder_state->Deliver(std::move(res)); };
  net::post(*server_->workers, [route = route_, req = request_, respond = std::move(respond)] {
    try {
      route->handler(*req, respond);
    } catch (const std::exception& e) {
      // A request field read as the wrong type (StatusFromException's INVALID_ARGUMENT) is the
      // client's error: a 400 naming it. Anything else is a bug: logged, and a 500.
      if (Status s = StatusFromException(e); s.code() == ErrorCode::kInvalidArgument) {
        respond(ProblemFromStatus(s, req->path));
        return;
      }
      OPENRL_LOG_ERROR("http: handler {} {} threw: {}", req->method, req->path, e.what());
      respond(ProblemResponse(500, "internal", "internal error while handling the request",
                              req->path));
    } catch (...) {
      OPENRL_LOG_ERROR("http: handler {} {} threw a non-standard exception", req->method, req->path);
      respond(ProblemResponse(500, "internal", "internal error while handling the request",
                              req->path));
    }
  });
}

void Connection::OnResponse(Response res) {
  if (state_ != State::kHandling) return;  // the connection was closed meanwhile
  if (res.stream) return StartStream(std::move(res));
  Write(std::move(res));
}

void Connection::ReplyError(Response res) {
  close_after_ = true;
  Write(std::move(res));
}

void Connection::Write(Response res) {
  state_ = State::kWriting;
  if (res.status < 100 || res.status > 999) {
    OPENRL_LOG_ERROR("http: handler for {} returned invalid status {}", route_label_, res.status);
    res = ProblemResponse(500, "internal", "the handler returned an invalid HTTP status");
  }
  if (!request_open_) {
    request_open_ = true;
    server_->in_flight->Inc();
  }
  auto msg = std::make_shared<bhttp::response<bhttp::string_body>>();
  msg->version(version_);
  msg->result(static_cast<unsigned>(res.status));
  for (const auto& [name, value] : res.headers.fields()) {
    if (SafeHeaderText(name) && SafeHeaderText(value)) msg->insert(name, value);
  }
  bool close = close_after_ || !keep_alive_ || server_->draining;
  msg->keep_alive(!close);
  int status = res.status;
  if (head_) {
    msg->content_length(res.body.size());
  } else {
    msg->body() = std::move(res.body);
    msg->prepare_payload();
  }
  stream_.expires_after(server_->options.write_timeout);
  bhttp::async_write(stream_, *msg,
                     [self = shared_from_this(), msg, close, status](beast::error_code ec, size_t) {
                       self->stream_.expires_never();
                       self->RecordCompletion(status);
                       self->OnWritten(ec, close);
                     });
}

void Connection::OnWritten(beast::error_code ec, bool close) {
  if (ec) return Finish();
  if (close) return LingerClose();
  DoReadRequest();
}

void Connection::RecordCompletion(int status) {
  if (!request_open_) return;
  request_open_ = false;
  server_->in_flight->Dec();
  server_->requests_total->With({method_label_, route_label_, std::to_string(status)}).Inc();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  server_->request_seconds->With({method_label_, route_label_}).Observe(seconds);
}

// Sends the rest of the response, then reads and discards what the client still sends (for
// instance the rest of an oversized body) for a short while, so it sees the response instead
// of a reset.
void Connection::LingerClose() {
  state_ = State::kDone;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(kLingerTime);
  auto drain = std::make_shared<std::function<void()>>();
  auto scratch = std::make_shared<std::vector<char>>(16384);
  *drain = [self = shared_from_this(), drain, scratch] {
    self->stream_.async_read_some(net::buffer(*scratch),
                                  [self, drain, scratch](beast::error_code ec, size_t) {
                                    if (ec) {
                                      *drain = nullptr;  // break the self-reference
                                      return self->Finish();
                                    }
                                    (*drain)();
                                  });
  };
  (*drain)();
}

void Connection::Finish() {
  if (state_ == State::kDone && !stream_.socket().is_open()) return;
  bool was_streaming = state_ == State::kStreaming;
  state_ = State::kDone;
  if (stream_state_) {
    {
      std::lock_guard lock(stream_state_->mu);
      stream_state_->open = false;
    }
    stream_state_->cv.notify_all();
  }
  // 499: the client went away before the response was done (a stream already sent its status).
  if (request_open_) RecordCompletion(was_streaming ? stream_status_ : 499);
  read_timer_.cancel();
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
  server_->Remove(this);
}

net::any_io_executor Connection::executor() const { return strand_; }

}  // namespace openrl::http::internal
