// Engine failures reach the client: the real server (Scheduler + HttpServer) over a target that
// fails on demand for marked prompts. A failed request ends with a 500 JSON error, or with an SSE
// error event and no [DONE]; requests decoding in the same batches are unaffected.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "fault_injection.h"
#include "specula/base/thread_pool.h"
#include "specula/formats/generation_config.h"
#include "specula/server/http_server.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "test_util.h"

namespace specula {
namespace {

struct Reply {
  int status = 0;
  std::string body;  // raw: chunk framing included for streams
};

// One request on a fresh connection (Connection: close), read to the end.
Reply Post(int port, const std::string& path, const std::string& json) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  Reply r;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return r;
  }
  const std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                          "Content-Length: " + std::to_string(json.size()) + "\r\n\r\n" + json;
  EXPECT_EQ(send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) all.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t head_end = all.find("\r\n\r\n");
  if (all.size() < 12 || head_end == std::string::npos) return r;
  r.status = std::stoi(all.substr(9, 3));
  r.body = all.substr(head_end + 4);
  return r;
}

// The text of an SSE completion stream (each event is one chunk, so it is contiguous).
std::string StreamText(const std::string& body) {
  std::string text;
  for (size_t at = body.find("data: {"); at != std::string::npos;
       at = body.find("data: {", at + 1)) {
    const Json event = Json::parse(body.substr(at + 6, body.find("\n\n", at) - at - 6));
    if (!event["choices"].empty()) text += event["choices"][0]["text"].get<std::string>();
  }
  return text;
}

std::string Request(int first_token, bool stream) {
  return Json{{"prompt", {first_token, 100, 101, 102, 103}},
              {"max_tokens", 24},
              {"temperature", 0},
              {"stream", stream}}
      .dump();
}

TEST(ServerFaults, EngineFailuresReachTheirClientsAndSpareTheOthers) {
  const auto [target_dir, assistant_dir] = test::MakePair("e2b-tiny", true);
  test::LoadedPair p = test::LoadPair("e2b-tiny", true);
  Result<std::unique_ptr<Tokenizer>> tok = LoadCheckpointTokenizer(target_dir);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const GenerationConfig gen;
  // Prompts starting with 7 fail in decoding (after a few tokens were sent), with 9 in prefill.
  test::FaultyTarget faulty(*p.target, {{7, 8}, {9, 0}});
  MtpDrafter mtp(*p.assistant);
  ThreadPool pool(2);
  server::Scheduler scheduler(faulty, &mtp, pool,
                              {.parallel = 6, .queue_max = 8, .context = 256, .prefill_rows = 256});
  server::HttpServer http({.host = "127.0.0.1", .port = 0, .model_name = "m", .have_drafter = true},
                          {.tokenizer = tok->get(),
                           .generation = &gen,
                           .vocab_size = p.target->config().vocab_size,
                           .scheduler = &scheduler,
                           .drafters = {}});
  Result<int> port = http.Bind();
  ASSERT_TRUE(port.ok()) << port.status().message();
  std::thread server([&] { http.Run(); });

  const Reply alone = Post(*port, "/v1/completions", Request(2, false));
  ASSERT_EQ(alone.status, 200) << alone.body;
  const std::string expected = Json::parse(alone.body)["choices"][0]["text"];
  const Reply alone_stream = Post(*port, "/v1/completions", Request(2, true));
  ASSERT_EQ(alone_stream.status, 200);

  // Healthy and failing requests, streaming and not, all decoding at once.
  std::vector<std::future<Reply>> replies;
  for (int first : {2, 7, 9, 2, 7, 9}) {
    const bool stream = replies.size() >= 3;
    replies.push_back(std::async(std::launch::async, [&, first, stream] {
      return Post(*port, "/v1/completions", Request(first, stream));
    }));
  }
  const Reply ok = replies[0].get(), late = replies[1].get(), early = replies[2].get();
  const Reply ok_stream = replies[3].get(), late_stream = replies[4].get(),
              early_stream = replies[5].get();

  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Json::parse(ok.body)["choices"][0]["text"], expected);
  EXPECT_EQ(ok_stream.status, 200);
  EXPECT_EQ(StreamText(ok_stream.body), expected);
  EXPECT_EQ(StreamText(alone_stream.body), expected);
  EXPECT_NE(ok_stream.body.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(ok_stream.body.find("\"error\""), std::string::npos);

  for (const Reply* r : {&late, &early}) {
    EXPECT_EQ(r->status, 500) << r->body;
    const Json e = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(e.contains("error")) << r->body;
    EXPECT_EQ(e["error"]["type"], "server_error");
    EXPECT_NE(e["error"]["message"].get<std::string>().find("injected target failure"),
              std::string::npos);
  }
  for (const Reply* r : {&late_stream, &early_stream}) {
    EXPECT_EQ(r->status, 200);  // the stream had begun
    EXPECT_NE(r->body.find("data: {\"error\""), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("injected target failure"), std::string::npos);
    EXPECT_EQ(r->body.find("[DONE]"), std::string::npos);
    EXPECT_EQ(r->body.find("finish_reason\":\"length"), std::string::npos);
    EXPECT_EQ(r->body.find("finish_reason\":\"stop"), std::string::npos);
  }
  // The late failure streamed tokens before its error event; the early one none.
  EXPECT_NE(late_stream.body.find("\"text\""), std::string::npos);
  EXPECT_EQ(early_stream.body.find("\"text\""), std::string::npos);
  EXPECT_GT(faulty.failures.load(), 0);

  // The gauges are refreshed after each engine round, so a reply can arrive just before the round
  // that sent it has been counted: wait for them to settle.
  server::MetricsSnapshot m = scheduler.Metrics();
  for (int i = 0; i < 500 && (m.running != 0 || m.queue_depth != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    m = scheduler.Metrics();
  }
  EXPECT_EQ(m.running, 0);
  EXPECT_EQ(m.queue_depth, 0);
  http.Shutdown();
  server.join();
}

// A job's callback holds the HTTP handler's waker, whose timer belongs to the server's I/O context;
// once Drain() has returned the server may be destroyed, so no callback may outlive it inside the
// scheduler (it did: a shutdown that ended running requests read a freed timer service).
TEST(ServerFaults, EndedJobsReleaseTheirCallbacksBeforeDrainReturns) {
  test::LoadedPair p = test::LoadPair("e2b-tiny", true);
  ThreadPool pool(2);
  server::Scheduler scheduler(*p.target, nullptr, pool,
                              {.parallel = 2, .queue_max = 2, .context = 128, .prefill_rows = 64});
  std::vector<std::shared_ptr<server::Job>> jobs;
  std::vector<std::weak_ptr<int>> captured;
  std::atomic<int> updates{0};
  for (int i = 0; i < 3; ++i) {
    auto job = std::make_shared<server::Job>();
    job->prompt = {2, 100 + i, 101};
    job->options.base.max_new_tokens = 4 + i;
    auto held = std::make_shared<int>(i);
    captured.push_back(held);
    job->on_update = [held, &updates] { updates.fetch_add(1); };
    ASSERT_TRUE(scheduler.Submit(job));
    jobs.push_back(std::move(job));
  }
  scheduler.Drain();
  EXPECT_GT(updates.load(), 3);
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::lock_guard<std::mutex> lock(jobs[i]->mu);
    EXPECT_TRUE(jobs[i]->done);
    EXPECT_EQ(jobs[i]->tokens.size(), 4 + i);
    EXPECT_TRUE(captured[i].expired()) << "job " << i << " still holds its callback";
  }
}

}  // namespace
}  // namespace specula
