// Approval notifications (--approval-webhook URL, repeatable): each held statement and each
// decision is POSTed as JSON to every URL, signed with HMAC-SHA256 over the body
// (X-Pgwarden-Signature: sha256=HEX, key from --approval-webhook-secret-file), and retried with
// backoff when the receiver fails (network errors, 5xx, 408, 429). Each URL has its own thread
// and a bounded queue, so a slow or dead receiver delays nobody: notify() only appends (dropping
// the oldest notification, counted and logged, when a queue is full).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pgwarden::core {

struct NotifierOptions {
  std::vector<std::string> urls;
  std::string secret;
  std::string ca_file;           // for https receivers with a private CA ("" = system CAs)
  unsigned attempts = 5;         // first try included
  double first_backoff_s = 0.5;  // doubled after each failure
  double timeout_s = 10;         // per attempt
  std::size_t max_queue = 1000;  // notifications per URL
  std::size_t max_queue_bytes = 8u << 20;  // and their bytes
};

class Notifier {
 public:
  explicit Notifier(NotifierOptions options);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Queues `body` (a JSON object) for every URL; `event` goes in X-Pgwarden-Event. Never blocks.
  void notify(const std::string& event, std::string body);

  std::uint64_t delivered() const noexcept { return delivered_.load(); }
  std::uint64_t failed() const noexcept { return failed_.load(); }  // gave up or dropped

  // HMAC-SHA256 of `body` under `secret`, as lower-case hex (exposed for tests).
  static std::string signature(const std::string& secret, const std::string& body);

 private:
  struct Item {
    std::string event, body;
  };
  struct Target {
    std::string url;
    std::string shown;  // in the log: without its path, which may be its secret
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Item> queue;
    std::size_t queued_bytes = 0;
    std::thread thread;
  };
  void run(Target& t);
  bool deliver(Target& t, const Item& item);

  NotifierOptions options_;
  std::vector<std::unique_ptr<Target>> targets_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> delivered_{0}, failed_{0};
};

}  // namespace pgwarden::core
