// A real server on 127.0.0.1:0 driven by the real client (and raw sockets for malformed input).
#include "openrl/http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "openrl/http/client.h"
#include "openrl/http/content_encoding.h"
#include "openrl/http/problem.h"

namespace openrl::http {
namespace {

using namespace std::chrono_literals;

// Sends raw bytes and returns everything the server sends until it closes (or 5 s pass).
std::string RawExchange(uint16_t port, const std::string& bytes, bool half_close = false) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "<connect failed>";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (!bytes.empty()) (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions o = {}) {
    o.metrics = &registry_;
    if (o.worker_threads == 8) o.worker_threads = 4;
    server_ = std::make_unique<Server>(o);
    AddRoutes(server_->router());
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
  }
  virtual void AddRoutes(Router& r) {
    r.Get("/items/{id}", [](const Request& req) {
      return Response::JsonBody(200, {{"id", req.PathParam("id")},
                                      {"q", req.Query("q").value_or("")},
                                      {"ua", req.headers.GetOr("x-test-header", "")},
                                      {"route", req.route},
                                      {"remote", req.remote_address}});
    });
    r.Post("/echo", [](const Request& req) { return Response::Text(200, req.body); });
    r.Post("/big", [](const Request& req) { return Response::Text(200, std::to_string(req.body.size())); },
           RouteOptions{.max_body_bytes = 64 * 1024});
    r.Get("/invalid", [](const Request& req) {
      return ProblemFromStatus(InvalidArgument("field 'x' must be positive"), req.path);
    });
    r.Get("/throw", [](const Request&) -> Response { throw std::runtime_error("boom"); });
    r.Get("/bad-status", [](const Request&) { return Response::Text(42, "?"); });
    r.AddAsync("GET", "/async", [](const Request&, Responder respond) {
      std::thread([respond] {
        std::this_thread::sleep_for(20ms);
        respond(Response::Text(200, "later"));
      }).detach();
    });
  }
  Client MakeClient(std::chrono::milliseconds timeout = 10s) {
    return Client("127.0.0.1", server_->port(), ClientOptions{.timeout = timeout});
  }
  metrics::Registry registry_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, RoutesWithPathQueryAndHeaders) {
  StartServer();
  Client c = MakeClient();
  Headers h;
  h.Set("X-Test-Header", "hello");
  auto r = c.Get("/items/a%2Fb?q=x+y", h);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  Json j = *r->JsonBody();
  EXPECT_EQ(j["id"], "a/b");
  EXPECT_EQ(j["q"], "x y");
  EXPECT_EQ(j["ua"], "hello");
  EXPECT_EQ(j["route"], "/items/{id}");
  EXPECT_EQ(j["remote"].get<std::string>().rfind("127.0.0.1:", 0), 0u);
  EXPECT_EQ(*r->headers.Get("content-type"), "application/json");
}

TEST_F(ServerTest, NotFoundAndMethodNotAllowedAreProblems) {
  StartServer();
  Client c = MakeClient();
  auto r = c.Get("/nope");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(*r->headers.Get("Content-Type"), "application/problem+json");
  Json j = *r->JsonBody();
  EXPECT_EQ(j["type"], "https://openrl.dev/problems/not-found");
  EXPECT_EQ(j["status"], 404);
  EXPECT_EQ(j["instance"], "/nope");
  r = c.Request("DELETE", "/echo");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(*r->headers.Get("Allow"), "POST");
  EXPECT_EQ((*r->JsonBody())["type"], "https://openrl.dev/problems/method-not-allowed");
  r = c.Get("/invalid");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ((*r->JsonBody())["detail"], "field 'x' must be positive");
}

TEST_F(ServerTest, BodyLimitPerRouteAnswers413) {
  StartServer(ServerOptions{.max_body_bytes = 1024});
  Client c = MakeClient();
  auto r = c.Post("/echo", std::string(2000, 'x'));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ((*r->JsonBody())["type"], "https://openrl.dev/problems/payload-too-large");
  r = c.Post("/big", std::string(2000, 'x'));  // the route allows 64 KiB
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "2000");
  r = c.Post("/big", std::string(100000, 'x'));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 413);
  // A chunked body (no Content-Length) is cut off by the same limit.
  std::string chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "400\r\n" + std::string(1024, 'y') + "\r\n";
  chunked += "0\r\n\r\n";
  EXPECT_EQ(RawExchange(server_->port(), chunked).rfind("HTTP/1.1 413", 0), 0u);
}

TEST_F(ServerTest, OversizedHeaderAnswers431) {
  StartServer(ServerOptions{.max_header_bytes = 4096});
  Client c = MakeClient();
  Headers h;
  h.Set("X-Big", std::string(8000, 'h'));
  auto r = c.Get("/items/1", h);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 431);
  r = c.Get("/items/1");  // a fresh connection works
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, KeepAliveReusesOneConnection) {
  StartServer();
  Client c = MakeClient();
  for (int i = 0; i < 5; ++i) {
    auto r = c.Get("/items/" + std::to_string(i));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 200);
  }
  auto r = c.Post("/echo", "{\"a\":1}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "{\"a\":1}");
  EXPECT_EQ(c.connections_opened(), 1);
}

TEST_F(ServerTest, PipelinedRequestsAnsweredInOrder) {
  StartServer();
  std::string two =
      "GET /items/first HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /items/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string out = RawExchange(server_->port(), two);
  size_t a = out.find("\"first\"");
  size_t b = out.find("\"second\"");
  ASSERT_NE(a, std::string::npos) << out;
  ASSERT_NE(b, std::string::npos) << out;
  EXPECT_LT(a, b);
}

TEST_F(ServerTest, SlowHandlersDoNotBlockFastOnes) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> slow_started{0};
  ServerOptions o{.io_threads = 1, .worker_threads = 4};
  o.metrics = &registry_;
  server_ = std::make_unique<Server>(o);
  server_->router().Get("/slow", [&](const Request&) {
    ++slow_started;
    released.wait();
    return Response::Text(200, "slow");
  });
  server_->router().Get("/fast", [](const Request&) { return Response::Text(200, "fast"); });
  ASSERT_TRUE(server_->Start().ok());
  std::vector<std::future<int>> slow;
  for (int i = 0; i < 3; ++i) {
    slow.push_back(std::async(std::launch::async, [&] {
      Client c = MakeClient();
      auto r = c.Get("/slow");
      return r.ok() ? r->status : -1;
    }));
  }
  while (slow_started < 3) std::this_thread::sleep_for(5ms);
  Client c = MakeClient(5s);
  auto r = c.Get("/fast");  // would time out if the slow handlers held the io thread
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "fast");
  release.set_value();
  for (auto& f : slow) EXPECT_EQ(f.get(), 200);
}

TEST_F(ServerTest, AsyncHandlerAnswersFromAnotherThread) {
  StartServer();
  Client c = MakeClient();
  auto r = c.Get("/async");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "later");
}

TEST_F(ServerTest, HandlerExceptionIs500AndServerKeepsServing) {
  StartServer();
  Client c = MakeClient();
  for (int i = 0; i < 3; ++i) {
    auto r = c.Get("/throw");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 500);
    EXPECT_EQ((*r->JsonBody())["type"], "https://openrl.dev/problems/internal");
  }
  auto r = c.Get("/bad-status");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
  r = c.Get("/items/ok");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(registry_.Expose().find(
                "openrl_http_requests_total{method=\"GET\",route=\"/throw\",status=\"500\"} 3"),
            std::string::npos);
}

TEST_F(ServerTest, ZstdRequestBodies) {
  StartServer(ServerOptions{.max_body_bytes = 100000});
  Client c = MakeClient();
  std::string json = "{\"tokens\": [" + std::string(5000, '1') + "]}";
  Headers h;
  h.Set("Content-Encoding", "zstd");
  auto r = c.Post("/echo", *ZstdCompress(json), h);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, json);
  r = c.Post("/echo", "definitely not zstd", h);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ((*r->JsonBody())["type"], "https://openrl.dev/problems/invalid-argument");
  // Small on the wire, too big once decompressed.
  r = c.Post("/echo", *ZstdCompress(std::string(1000000, 'z')), h);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 413);
  h.Set("Content-Encoding", "br");
  r = c.Post("/echo", "x", h);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 415);
}

TEST_F(ServerTest, MalformedRequestsGet400AndNoCrash) {
  StartServer();
  for (const std::string& junk :
       {std::string("\x16\x03\x01\x02\x05garbage\r\n\r\n"), std::string("GET\r\n\r\n"),
        std::string("GET /x HTTP/9.9\r\n\r\n"), std::string("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
        std::string("POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
        std::string("GET nope HTTP/1.1\r\nHost: x\r\n\r\n")}) {
    std::string out = RawExchange(server_->port(), junk);
    EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << "for input " << junk << " got " << out;
    EXPECT_NE(out.find("application/problem+json"), std::string::npos);
  }
  EXPECT_EQ(RawExchange(server_->port(), "", /*half_close=*/true), "");  // connect and leave
  Client c = MakeClient();
  auto r = c.Get("/items/still-alive");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, SlowRequestTimesOutWith408) {
  StartServer(ServerOptions{.read_timeout = 200ms});
  std::string out = RawExchange(server_->port(), "GET /items/1 HTTP/1.1\r\nHost: x\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 408", 0), 0u) << out;
}

TEST_F(ServerTest, IdleKeepAliveConnectionIsClosed) {
  StartServer(ServerOptions{.idle_timeout = 200ms});
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(RawExchange(server_->port(), ""), "");  // the server closes without a response
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
}

TEST_F(ServerTest, ConnectionLimitAnswers503) {
  StartServer(ServerOptions{.max_connections = 1});
  Client first = MakeClient();
  ASSERT_TRUE(first.Get("/items/1").ok());  // holds the only slot (kept alive)
  std::string out = RawExchange(server_->port(), "GET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 503", 0), 0u) << out;
  first.Disconnect();
}

TEST_F(ServerTest, HeadReturnsHeadersOnly) {
  StartServer();
  Client c = MakeClient();
  auto r = c.Request("HEAD", "/items/5");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "");
  EXPECT_NE(*r->headers.Get("Content-Length"), "0");
  EXPECT_EQ(c.Get("/items/6")->status, 200);  // the connection is still in sync
}

}  // namespace
}  // namespace openrl::http
