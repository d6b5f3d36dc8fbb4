#include "core/jwks_fetcher.h"

#include <chrono>

#include "core/http_client.h"
#include "core/log.h"

namespace pgwarden::core {

namespace {

constexpr double kTimeoutS = 10;
constexpr std::size_t kMaxResponse = 1 << 20;
constexpr double kEarlyRefreshGapS = 10;

}  // namespace

JwksFetcher::JwksFetcher(std::string url, std::string ca_file, double refresh_s,
                         std::shared_ptr<policy::JwksSource> source)
    : url_text_(std::move(url)),
      url_shown_(url_for_log(url_text_, true)),
      ca_file_(std::move(ca_file)),
      refresh_s_(refresh_s),
      source_(std::move(source)) {}

JwksFetcher::~JwksFetcher() {
  cancel_.store(true);
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string JwksFetcher::fetch_once() {
  HttpCall call;
  call.url = url_text_;
  call.ca_file = ca_file_;
  call.timeout_s = kTimeoutS;
  call.max_response = kMaxResponse;
  call.cancel = &cancel_;
  const HttpReply response = http_call(call);
  if (!response.error.empty()) return response.error;
  if (response.status != 200) return "HTTP status " + std::to_string(response.status);
  auto keys = policy::Jwks::parse(response.body);
  if (!keys) return keys.error().message;
  if ((*keys)->keys().empty()) return "the key set has no usable key";
  source_->set(*keys);
  return {};
}

void JwksFetcher::start() {
  thread_ = std::thread([this] { run(); });
}

void JwksFetcher::run() {
  using Clock = std::chrono::steady_clock;
  bool have_keys = source_->get() != nullptr;
  auto last = Clock::now();
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (stop_) break;
    const double since = std::chrono::duration<double>(Clock::now() - last).count();
    // Until the first success, retry every 5 s; then on schedule, or early on an unknown kid.
    const bool due = have_keys ? since >= refresh_s_ : since >= 5;
    const bool early = since >= kEarlyRefreshGapS && source_->take_refresh_request();
    if (!due && !early) continue;
    lock.unlock();
    const std::string error = fetch_once();
    lock.lock();
    last = Clock::now();
    if (error.empty()) {
      if (!have_keys || early) PGW_INFO("jwks: keys loaded from %s", url_shown_.c_str());
      have_keys = true;
    } else {
      PGW_WARN("jwks: fetching %s failed (%s); keeping the keys in force", url_shown_.c_str(),
               error.c_str());
    }
  }
}

}  // namespace pgwarden::core
