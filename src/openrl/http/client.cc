#include "openrl/http/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <optional>

namespace openrl::http {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
namespace {
std::string_view ToStd(beast::string_view s) { return {s.data(), s.size()}; }
beast::string_view ToBeast(std::string_view s) { return {s.data(), s.size()}; }
}  // namespace

struct Client::Impl {
  std::string host;
  uint16_t port;
  ClientOptions options;
  net::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  int opened = 0;

  // Runs one async operation to completion on this thread.
  template <typename Start>
  beast::error_code Run(Start&& start) {
    beast::error_code result = net::error::would_block;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  Status Fail(std::string_view what, beast::error_code ec) {
    Disconnect();
    std::string msg = "http client: " + std::string(what) + " " + host + ":" +
                      std::to_string(port) + ": " + ec.message();
    if (ec == beast::error::timeout) return {ErrorCode::kDeadlineExceeded, msg};
    return Unavailable(msg);
  }

  void Disconnect() {
    if (stream) {
      beast::error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream->socket().close(ignored);
    }
    stream.reset();
    buffer.clear();
  }

  Status Connect() {
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return Fail("cannot resolve", ec);
    stream.emplace(ioc);
    stream->expires_after(options.timeout);
    ec = Run([&](auto handler) {
      stream->async_connect(results, [handler](beast::error_code e, const tcp::endpoint&) mutable {
        handler(e);
      });
    });
    if (ec) return Fail("cannot connect to", ec);
    ++opened;
    return Status::Ok();
  }

  Result<ClientResponse> Do(std::string_view method, std::string_view target,
                            std::string_view body, const Headers& headers,
                            const std::function<bool(std::string_view)>* on_data);
};

Result<ClientResponse> Client::Impl::Do(std::string_view method, std::string_view target,
                                        std::string_view body, const Headers& headers,
                                        const std::function<bool(std::string_view)>* on_data) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(ToBeast(method));
  req.target(ToBeast(target));
  req.version(11);
  req.set(bhttp::field::host, host + ":" + std::to_string(port));
  req.set(bhttp::field::user_agent, "openrl");
  for (const auto& [k, v] : headers.fields()) req.insert(k, v);
  req.body() = std::string(body);
  req.prepare_payload();
  req.keep_alive(true);

  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = stream.has_value() && stream->socket().is_open();
    if (!reused) OPENRL_RETURN_IF_ERROR(Connect());
    stream->expires_after(options.timeout);
    beast::error_code ec = Run([&](auto h) { bhttp::async_write(*stream, req, h); });
    if (ec) {
      if (reused && attempt == 0) { Disconnect(); continue; }
      return Fail("cannot send to", ec);
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(options.max_body_bytes);
    parser.header_limit(64 * 1024);
    if (method == "HEAD") parser.skip(true);
    ec = Run([&](auto h) { bhttp::async_read_header(*stream, buffer, parser, h); });
    if (ec) {
      // A kept-alive connection the server already closed: retry once on a fresh one.
      if (reused && attempt == 0 && !parser.got_some()) { Disconnect(); continue; }
      return Fail("no response from", ec);
    }
    ClientResponse out;
    out.status = static_cast<int>(parser.get().result_int());
    for (const auto& f : parser.get()) out.headers.Add(ToStd(f.name_string()), ToStd(f.value()));
    if (!on_data) {
      ec = Run([&](auto h) { bhttp::async_read(*stream, buffer, parser, h); });
      if (ec) return Fail("reading the response from", ec);
      out.body = std::move(parser.get().body());
    } else {
      while (!parser.is_done()) {
        stream->expires_after(options.timeout);
        ec = Run([&](auto h) { bhttp::async_read_some(*stream, buffer, parser, h); });
        if (ec) return Fail("reading the stream from", ec);
        std::string& piece = parser.get().body();
        if (!piece.empty()) {
          bool more = (*on_data)(piece);
          piece.clear();
          if (!more) {
            Disconnect();
            return out;
          }
        }
      }
    }
    if (!parser.get().keep_alive()) Disconnect();
    return out;
  }
  return Unavailable("http client: connection to " + host + " closed twice");
}

Client::Client(std::string host, uint16_t port, ClientOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->options = options;
}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Result<ClientResponse> Client::Request(std::string_view method, std::string_view target,
                                       std::string_view body, const Headers& headers) {
  return impl_->Do(method, target, body, headers, nullptr);
}

Result<ClientResponse> Client::Get(std::string_view target, const Headers& headers) {
  return Request("GET", target, {}, headers);
}

Result<ClientResponse> Client::Post(std::string_view target, std::string_view body,
                                    const Headers& headers) {
  Headers h = headers;
  if (!h.Has("Content-Type")) h.Set("Content-Type", "application/json");
  return Request("POST", target, body, h);
}

Result<ClientResponse> Client::Stream(std::string_view method, std::string_view target,
                                      std::string_view body, const Headers& headers,
                                      const std::function<bool(std::string_view)>& on_data) {
  return impl_->Do(method, target, body, headers, &on_data);
}

Result<ClientResponse> Client::StreamEvents(std::string_view method, std::string_view target,
                                            std::string_view body, const Headers& headers,
                                            const std::function<bool(const SseEvent&)>& on_event) {
  SseParser parser;
  return Stream(method, target, body, headers,
                [&](std::string_view data) { return parser.Feed(data, on_event); });
}

int Client::connections_opened() const { return impl_->opened; }
void Client::Disconnect() { impl_->Disconnect(); }

bool SseParser::Feed(std::string_view bytes, const std::function<bool(const SseEvent&)>& on_event) {
  for (char c : bytes) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      skip_lf_ = c == '\r';
      std::string line = std::move(line_);
      line_.clear();
      if (!Line(line, on_event)) return false;
    } else {
      line_ += c;
    }
  }
  return true;
}

bool SseParser::Line(std::string_view line, const std::function<bool(const SseEvent&)>& on_event) {
  if (line.empty()) {
    if (!has_data_) {
      current_ = SseEvent{};
      return true;
    }
    SseEvent ev = std::move(current_);
    current_ = SseEvent{};
    has_data_ = false;
    return on_event(ev);
  }
  if (line.front() == ':') return true;  // comment
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) current_.data += '\n';
    current_.data += value;
    has_data_ = true;
  } else if (field == "event") {
    current_.event = std::string(value);
  } else if (field == "id") {
    current_.id = std::string(value);
  }
  return true;
}

}  // namespace openrl::http
