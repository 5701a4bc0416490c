// Chunked streaming responses (SSE) of a Connection: header, one chunk per flush, last chunk.
// While streaming, a read on the socket detects the client going away and tells the producer.
#include "openrl/core/log.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include "openrl/http/server_internal.h"

namespace openrl::http::internal {
namespace bhttp = beast::http;
namespace {

struct StreamHeader {
  bhttp::response<bhttp::empty_body> msg;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer;
};

std::shared_ptr<StreamWriter> MakeWriter(std::shared_ptr<StreamState> state,
                                         std::weak_ptr<Connection> conn);

}  // namespace

void Connection::StartStream(Response res) {
  if (res.status < 100 || res.status > 999) {
    res.stream = nullptr;
    return Write(std::move(res));  // Write answers 500 for the invalid status
  }
  state_ = State::kStreaming;
  stream_state_ = std::make_shared<StreamState>();
  auto header = std::make_shared<StreamHeader>();
  header->msg.version(version_);
  header->msg.result(static_cast<unsigned>(res.status));
  for (const auto& [name, value] : res.headers.fields()) {
    if (name.find_first_of("\r\n") == std::string::npos &&
        value.find_first_of("\r\n") == std::string::npos) {
      header->msg.insert(name, value);
    }
  }
  // A stream ends its connection: the disconnect watch below owns the read side.
  header->msg.keep_alive(false);
  header->msg.chunked(true);
  header->serializer.emplace(header->msg);
  stream_status_ = res.status;
  stream_.expires_after(server_->options.write_timeout);
  chunk_in_flight_ = true;
  bhttp::async_write_header(
      stream_, *header->serializer,
      [self = shared_from_this(), header, producer = std::move(res.stream)](
          beast::error_code ec, size_t) mutable {
        self->stream_.expires_never();
        self->chunk_in_flight_ = false;
        if (ec) return self->Finish();
        self->WatchForDisconnect();
        auto writer = MakeWriter(self->stream_state_, self->weak_from_this());
        net::post(*self->server_->workers, [producer = std::move(producer), writer]() mutable {
          try {
            producer(writer);
          } catch (const std::exception& e) {
            OPENRL_LOG_ERROR("http: stream producer threw: {}", e.what());
          } catch (...) {
            OPENRL_LOG_ERROR("http: stream producer threw a non-standard exception");
          }
          writer.reset();  // the last reference ends the stream
        });
        self->FlushStream();
      });
}

void Connection::WatchForDisconnect() {
  buffer_.clear();
  stream_.async_read_some(buffer_.prepare(1024),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            if (!ec) {
                              // The client sent more (a pipelined request): it is alive; the
                              // connection closes after the stream, so the bytes are dropped.
                              self->buffer_.commit(n);
                              return;
                            }
                            if (self->state_ != State::kStreaming) return;
                            self->client_gone_ = true;
                            {
                              std::lock_guard lock(self->stream_state_->mu);
                              self->stream_state_->open = false;
                            }
                            self->stream_state_->cv.notify_all();
                            if (!self->chunk_in_flight_) self->Finish();
                          });
}

void Connection::PostFlush() {
  net::post(strand_, [self = shared_from_this()] { self->FlushStream(); });
}

void Connection::FlushStream() {
  if (state_ != State::kStreaming || chunk_in_flight_) return;
  if (client_gone_) return Finish();
  std::string chunk;
  bool finish = false;
  {
    std::lock_guard lock(stream_state_->mu);
    if (!stream_state_->pending.empty() && stream_state_->open) {
      chunk.swap(stream_state_->pending);
    } else if (stream_state_->producer_done || !stream_state_->open) {
      finish = true;
      stream_state_->pending.clear();
    }
  }
  stream_state_->cv.notify_all();
  if (chunk.empty() && !finish) return;
  chunk_in_flight_ = true;
  stream_.expires_after(server_->options.write_timeout);
  auto on_written = [self = shared_from_this(), finish](beast::error_code ec, size_t) {
    self->stream_.expires_never();
    self->chunk_in_flight_ = false;
    if (ec || finish) {
      self->RecordCompletion(self->stream_status_);
      return self->Finish();
    }
    self->FlushStream();
  };
  if (finish) {
    net::async_write(stream_, bhttp::make_chunk_last(), std::move(on_written));
  } else {
    auto data = std::make_shared<std::string>(std::move(chunk));
    net::async_write(stream_, bhttp::make_chunk(net::buffer(*data)),
                     [data, on_written = std::move(on_written)](beast::error_code ec, size_t n) mutable {
                       on_written(ec, n);
                     });
  }
}

namespace {

class ConnectionStreamWriter : public StreamWriter {
 public:
  ConnectionStreamWriter(std::shared_ptr<StreamState> state, std::weak_ptr<Connection> conn)
      : state_(std::move(state)), conn_(std::move(conn)) {}
  ~ConnectionStreamWriter() override { Close(); }

  bool Write(std::string_view bytes) override {
    {
      std::unique_lock lock(state_->mu);
      state_->cv.wait(lock, [&] { return !state_->open || state_->pending.size() < kHighWater; });
      if (!state_->open || state_->producer_done) return false;
      state_->pending.append(bytes);
    }
    return Kick();
  }
  void Close() override {
    {
      std::lock_guard lock(state_->mu);
      if (state_->producer_done) return;
      state_->producer_done = true;
    }
    Kick();
  }
  bool IsOpen() const override {
    std::lock_guard lock(state_->mu);
    return state_->open && !state_->producer_done;
  }

 private:
  static constexpr size_t kHighWater = 1 << 20;
  bool Kick() {
    if (auto conn = conn_.lock()) {
      conn->PostFlush();
      return true;
    }
    std::lock_guard lock(state_->mu);
    state_->open = false;
    return false;
  }
  std::shared_ptr<StreamState> state_;
  std::weak_ptr<Connection> conn_;
};

std::shared_ptr<StreamWriter> MakeWriter(std::shared_ptr<StreamState> state,
                                         std::weak_ptr<Connection> conn) {
  return std::make_shared<ConnectionStreamWriter>(std::move(state), std::move(conn));
}

}  // namespace
}  // namespace openrl::http::internal
