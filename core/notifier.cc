#include "core/notifier.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>

#include "core/http_client.h"
#include "core/log.h"

namespace pgwarden::core {

Notifier::Notifier(NotifierOptions options) : options_(std::move(options)) {
  for (const auto& url : options_.urls) {
    targets_.push_back(std::make_unique<Target>());
    targets_.back()->url = url;
    targets_.back()->shown = url_for_log(url, false);
  }
  for (auto& t : targets_) {
    Target& target = *t;
    t->thread = std::thread([this, &target] { run(target); });
  }
}

Notifier::~Notifier() {
  stop_.store(true);
  for (auto& t : targets_) {
    { std::lock_guard lock(t->mu); }
    t->cv.notify_all();
  }
  for (auto& t : targets_) {
    if (t->thread.joinable()) t->thread.join();
  }
}

std::string Notifier::signature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 15]);
  }
  return out;
}

void Notifier::notify(const std::string& event, std::string body) {
  for (auto& t : targets_) {
    bool dropped = false;
    {
      std::lock_guard lock(t->mu);
      while (!t->queue.empty() && (t->queue.size() >= options_.max_queue ||
                                   t->queued_bytes + body.size() > options_.max_queue_bytes)) {
        t->queued_bytes -= t->queue.front().body.size();
        t->queue.pop_front();
        dropped = true;
      }
      t->queued_bytes += body.size();
      t->queue.push_back(Item{event, body});
    }
    t->cv.notify_one();
    if (dropped) {
      failed_.fetch_add(1);
      PGW_WARN("webhook %s: too many notifications waiting; the oldest were dropped",
               t->shown.c_str());
    }
  }
}

bool Notifier::deliver(Target& t, const Item& item) {
  HttpCall call;
  call.url = t.url;
  call.method = "POST";
  call.body = item.body;
  call.ca_file = options_.ca_file;
  call.timeout_s = options_.timeout_s;
  call.max_response = 64 * 1024;
  call.cancel = &stop_;
  call.headers = {"Content-Type: application/json", "X-Pgwarden-Event: " + item.event,
                  "X-Pgwarden-Signature: sha256=" + signature(options_.secret, item.body)};
  double backoff = options_.first_backoff_s;
  for (unsigned attempt = 1; attempt <= options_.attempts && !stop_.load(); ++attempt) {
    const HttpReply r = http_call(call);
    if (r.error.empty() && r.status >= 200 && r.status < 300) return true;
    const bool retry = !r.error.empty() || r.status >= 500 || r.status == 408 || r.status == 429;
    const std::string why = r.error.empty() ? "HTTP status " + std::to_string(r.status) : r.error;
    if (!retry || attempt == options_.attempts) {
      PGW_WARN("webhook %s: %s notification not delivered after %u attempts (%s)", t.shown.c_str(),
               item.event.c_str(), attempt, why.c_str());
      return false;
    }
    PGW_INFO("webhook %s: attempt %u failed (%s); retrying in %g s", t.shown.c_str(), attempt,
             why.c_str(), backoff);
    std::unique_lock lock(t.mu);
    t.cv.wait_for(lock, std::chrono::duration<double>(backoff), [this] { return stop_.load(); });
    backoff *= 2;
  }
  return false;
}

void Notifier::run(Target& t) {
  while (true) {
    Item item;
    {
      std::unique_lock lock(t.mu);
      t.cv.wait(lock, [&] { return stop_.load() || !t.queue.empty(); });
      if (stop_.load()) return;
      item = std::move(t.queue.front());
      t.queue.pop_front();
      t.queued_bytes -= item.body.size();
    }
    if (deliver(t, item)) {
      delivered_.fetch_add(1);
    } else {
      failed_.fetch_add(1);
    }
  }
}

}  // namespace pgwarden::core
