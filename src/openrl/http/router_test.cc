// Unit tests of the pieces without sockets: router, messages, problems, SSE, zstd.
#include <gtest/gtest.h>

#include "openrl/http/client.h"
#include "openrl/http/content_encoding.h"
#include "openrl/http/problem.h"
#include "openrl/http/router.h"

namespace openrl::http {
namespace {

Response Named(const std::string& name) { return Response::Text(200, name); }

TEST(RouterTest, LiteralBeatsParameterAndParamsDecode) {
  Router r;
  r.Get("/api/v1/futures/{id}", [](const Request&) { return Named("param"); });
  r.Get("/api/v1/futures/latest", [](const Request&) { return Named("literal"); });
  r.Get("/static/{path...}", [](const Request&) { return Named("rest"); });
  auto m = r.Find("GET", "/api/v1/futures/latest");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->pattern, "/api/v1/futures/latest");
  m = r.Find("GET", "/api/v1/futures/a%20b");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->pattern, "/api/v1/futures/{id}");
  EXPECT_EQ(m.params.at("id"), "a b");
  m = r.Find("GET", "/static/css/site.css");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params.at("path"), "css/site.css");
  EXPECT_EQ(r.Find("GET", "/api/v1/futures/").route, nullptr);       // empty segment
  EXPECT_EQ(r.Find("GET", "/api/v1/futures/1/x").route, nullptr);    // too long
  EXPECT_EQ(r.Find("GET", "/api/v1").route, nullptr);                // too short
}

TEST(RouterTest, MethodMismatchReportsAllowed) {
  Router r;
  r.Post("/x", [](const Request&) { return Named("post"); });
  r.Put("/x", [](const Request&) { return Named("put"); });
  auto m = r.Find("GET", "/x");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed_methods, (std::vector<std::string>{"POST", "PUT"}));
  EXPECT_TRUE(r.Find("GET", "/y").allowed_methods.empty());
}

TEST(RouterTest, HeadUsesGetRoutesAndRootMatches) {
  Router r;
  r.Get("/", [](const Request&) { return Named("root"); });
  EXPECT_NE(r.Find("HEAD", "/").route, nullptr);
  EXPECT_EQ(r.Find("GET", "/a").route, nullptr);
}

TEST(RouterTest, BadPatternsThrow) {
  Router r;
  auto h = [](const Request&) { return Named(""); };
  EXPECT_THROW(r.Get("nope", h), std::logic_error);
  EXPECT_THROW(r.Get("/{rest...}/x", h), std::logic_error);
}

TEST(MessageTest, QueryAndPercentDecoding) {
  auto q = ParseQuery("a=1&b=x%20y+z&flag&a=2&=v&bad=%zz");
  EXPECT_EQ(q.count("a"), 2u);
  EXPECT_EQ(q.find("b")->second, "x y z");
  EXPECT_EQ(q.find("flag")->second, "");
  EXPECT_EQ(q.find("bad")->second, "%zz");
  EXPECT_EQ(PercentDecode("a+b%2Fc%", false), "a+b/c%");
}

TEST(MessageTest, HeadersAreCaseInsensitive) {
  Headers h;
  h.Add("Content-Type", "a");
  h.Set("content-type", "b");
  EXPECT_EQ(h.fields().size(), 1u);
  EXPECT_EQ(*h.Get("CONTENT-TYPE"), "b");
  EXPECT_FALSE(h.Has("x"));
}

TEST(MessageTest, FormatSseEvent) {
  EXPECT_EQ(FormatSseEvent("hello"), "data: hello\n\n");
  EXPECT_EQ(FormatSseEvent("a\nb", "update", "7"), "event: update\nid: 7\ndata: a\ndata: b\n\n");
}

TEST(MessageTest, RequestJsonBodyErrorNamesBody) {
  Request r;
  r.body = "{\"a\":";
  auto j = r.JsonBody();
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(j.status().message().find("request body"), std::string::npos);
}

TEST(ProblemTest, FromStatus) {
  Response r = ProblemFromStatus(NotFound("run 'x' does not exist"), "/runs/x");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(*r.headers.Get("Content-Type"), "application/problem+json");
  Json j = Json::parse(r.body);
  EXPECT_EQ(j["type"], "https://openrl.dev/problems/not-found");
  EXPECT_EQ(j["title"], "Not found");
  EXPECT_EQ(j["status"], 404);
  EXPECT_EQ(j["detail"], "run 'x' does not exist");
  EXPECT_EQ(j["instance"], "/runs/x");
  Response big = ProblemFromStatus(Status(ErrorCode::kPayloadTooLarge, "too big"));
  EXPECT_EQ(big.status, 413);
  EXPECT_FALSE(Json::parse(big.body).contains("instance"));
  EXPECT_EQ(ProblemSlugFor(ErrorCode::kFailedPrecondition), "failed-precondition");
}

TEST(SseParserTest, FieldsCommentsAndLineEndings) {
  SseParser p;
  std::vector<SseEvent> got;
  auto cb = [&](const SseEvent& e) { got.push_back(e); return true; };
  // Split across feeds, CRLF and bare CR, a comment, a data-less block.
  EXPECT_TRUE(p.Feed("event: tick\r\nid: 1\r\ndata: a", cb));
  EXPECT_TRUE(p.Feed("\r\ndata:b\r\n\r\n: keepalive\n\nid: 9\n\ndata: x\r\r", cb));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].event, "tick");
  EXPECT_EQ(got[0].id, "1");
  EXPECT_EQ(got[0].data, "a\nb");
  EXPECT_EQ(got[1].data, "x");
  EXPECT_EQ(got[1].event, "");
  EXPECT_FALSE(p.Feed("data: stop\n\n", [](const SseEvent&) { return false; }));
}

TEST(ZstdTest, RoundTripLimitsAndErrors) {
  std::string text(100000, 'a');
  auto packed = ZstdCompress(text);
  ASSERT_TRUE(packed.ok());
  EXPECT_LT(packed->size(), 1000u);
  auto unpacked = ZstdDecompress(*packed, 200000);
  ASSERT_TRUE(unpacked.ok());
  EXPECT_EQ(*unpacked, text);
  EXPECT_EQ(ZstdDecompress(*packed, 50000).status().code(), ErrorCode::kPayloadTooLarge);
  EXPECT_EQ(ZstdDecompress("not zstd at all", 100).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ZstdDecompress(packed->substr(0, packed->size() / 2), 200000).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(DecodeContent("gzip", "x", 10).status().code(), ErrorCode::kUnimplemented);
  EXPECT_EQ(*DecodeContent("identity", "x", 10), "x");
  EXPECT_EQ(*DecodeContent(" zstd ", *packed, 200000), text);
}

}  // namespace
}  // namespace openrl::http
