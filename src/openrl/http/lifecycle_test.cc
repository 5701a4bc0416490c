// Streaming (SSE), built-in routes and metrics, and graceful shutdown of the real server.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "openrl/http/client.h"
#include "openrl/http/server.h"

namespace openrl::http {
namespace {

using namespace std::chrono_literals;

ServerOptions Options(metrics::Registry* reg) {
  ServerOptions o;
  o.worker_threads = 4;
  o.metrics = reg;
  return o;
}

TEST(StreamTest, ServerSentEventsArriveInOrder) {
  metrics::Registry reg;
  Server server(Options(&reg));
  server.router().Get("/events", [](const Request& req) {
    int n = std::stoi(req.Query("n").value_or("3"));
    return Response::EventStream([n](std::shared_ptr<StreamWriter> w) {
      for (int i = 0; i < n; ++i) {
        if (!w->SendEvent("{\"i\":" + std::to_string(i) + "}\nline2", "tick", std::to_string(i))) return;
        std::this_thread::sleep_for(5ms);
      }
      w->SendComment("done");
      w->SendEvent("[DONE]");
    });
  });
  ASSERT_TRUE(server.Start().ok());
  Client c("127.0.0.1", server.port());
  std::vector<SseEvent> events;
  auto r = c.StreamEvents("GET", "/events?n=5", {}, {}, [&](const SseEvent& e) {
    events.push_back(e);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(*r->headers.Get("Content-Type"), "text/event-stream");
  EXPECT_EQ(*r->headers.Get("Transfer-Encoding"), "chunked");
  ASSERT_EQ(events.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(events[i].event, "tick");
    EXPECT_EQ(events[i].id, std::to_string(i));
    EXPECT_EQ(events[i].data, "{\"i\":" + std::to_string(i) + "}\nline2");
  }
  EXPECT_EQ(events[5].data, "[DONE]");
  // The server is fine afterwards (streams close their connection; the client reconnects).
  auto again = c.Get("/healthz");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, 200);
}

TEST(StreamTest, ClientDisconnectStopsTheProducer) {
  metrics::Registry reg;
  Server server(Options(&reg));
  std::promise<int> stopped_after;
  server.router().Get("/forever", [&](const Request&) {
    return Response::EventStream([&](std::shared_ptr<StreamWriter> w) {
      int sent = 0;
      while (w->SendEvent("x" + std::to_string(sent))) {
        ++sent;
        std::this_thread::sleep_for(2ms);
      }
      EXPECT_FALSE(w->IsOpen());
      stopped_after.set_value(sent);
    });
  });
  ASSERT_TRUE(server.Start().ok());
  Client c("127.0.0.1", server.port());
  int received = 0;
  auto r = c.StreamEvents("GET", "/forever", {}, {}, [&](const SseEvent&) { return ++received < 3; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(received, 3);
  auto fut = stopped_after.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready) << "producer never saw the disconnect";
  EXPECT_GE(fut.get(), 3);
}

TEST(BuiltinRoutesTest, HealthReadinessAndMetrics) {
  metrics::Registry reg;
  Server server(Options(&reg));
  std::atomic<bool> db_ok{true};
  server.AddReadinessCheck("database", [&] {
    return db_ok ? Status::Ok() : Unavailable("sqlite: database is locked");
  });
  ASSERT_TRUE(server.Start().ok());
  Client c("127.0.0.1", server.port());
  auto r = c.Get("/healthz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ((*r->JsonBody())["status"], "ok");
  r = c.Get("/readyz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ((*r->JsonBody())["checks"]["database"], "ok");
  db_ok = false;
  r = c.Get("/readyz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  Json j = *r->JsonBody();
  EXPECT_EQ(j["type"], "https://openrl.dev/problems/not-ready");
  EXPECT_NE(j["detail"].get<std::string>().find("database"), std::string::npos);
  EXPECT_NE(j["checks"]["database"].get<std::string>().find("locked"), std::string::npos);
  r = c.Get("/metrics");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->headers.Get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r->body.find("openrl_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1\n"),
            std::string::npos) << r->body;
  EXPECT_NE(r->body.find("openrl_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"503\"} 1\n"),
            std::string::npos);
  EXPECT_NE(r->body.find("openrl_http_request_duration_seconds_count{method=\"GET\",route=\"/readyz\"} 2\n"),
            std::string::npos);
  // The /metrics request itself is in flight while the page is rendered.
  EXPECT_NE(r->body.find("openrl_http_requests_in_flight 1\n"), std::string::npos);
}

TEST(ShutdownTest, InFlightRequestFinishesThenServerStops) {
  metrics::Registry reg;
  Server server(Options(&reg));
  std::promise<void> entered;
  server.router().Get("/work", [&](const Request&) {
    entered.set_value();
    std::this_thread::sleep_for(300ms);
    return Response::Text(200, "finished");
  });
  ASSERT_TRUE(server.Start().ok());
  uint16_t port = server.port();
  auto pending = std::async(std::launch::async, [port] {
    Client c("127.0.0.1", port);
    return c.Get("/work");
  });
  entered.get_future().wait();
  auto t0 = std::chrono::steady_clock::now();
  server.Shutdown(5s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  auto r = pending.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "finished");
  EXPECT_EQ(*r->headers.Get("Connection"), "close");
  Client late("127.0.0.1", port, ClientOptions{.timeout = 2s});
  EXPECT_FALSE(late.Get("/healthz").ok());  // no longer listening
}

TEST(ShutdownTest, DeadlineClosesStreamsAndIdleConnections) {
  metrics::Registry reg;
  Server server(Options(&reg));
  std::promise<void> producer_done;
  server.router().Get("/stream", [&](const Request&) {
    return Response::EventStream([&](std::shared_ptr<StreamWriter> w) {
      while (w->SendEvent("tick")) std::this_thread::sleep_for(5ms);
      producer_done.set_value();
    });
  });
  ASSERT_TRUE(server.Start().ok());
  Client idle("127.0.0.1", server.port());
  ASSERT_TRUE(idle.Get("/healthz").ok());  // an idle keep-alive connection
  std::atomic<int> events{0};
  auto streaming = std::async(std::launch::async, [&, port = server.port()] {
    Client c("127.0.0.1", port);
    return c.StreamEvents("GET", "/stream", {}, {}, [&](const SseEvent&) { ++events; return true; });
  });
  while (events < 2) std::this_thread::sleep_for(5ms);
  server.Shutdown(2s);
  auto r = streaming.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();  // the stream ended cleanly with a last chunk
  EXPECT_EQ(producer_done.get_future().wait_for(5s), std::future_status::ready);
}

}  // namespace
}  // namespace openrl::http
