// Fetches the identity provider's JWKS from --jwks-url (libcurl: 10 s, 1 MiB, proxy from the
// environment) on a background thread, at start, every
// --jwks-refresh seconds, and early (at most every 10 s) when a core saw a token with an unknown
// kid. A failed fetch or an invalid key set keeps the keys in force and is logged; until the
// first success, token logins fail (static users still work). Off the data path: the workers
// only read the JwksSource snapshot.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "policy/jwt.h"

namespace pgwarden::core {

class JwksFetcher {
 public:
  JwksFetcher(std::string url, std::string ca_file, double refresh_s,
              std::shared_ptr<policy::JwksSource> source);
  ~JwksFetcher();
  JwksFetcher(const JwksFetcher&) = delete;
  JwksFetcher& operator=(const JwksFetcher&) = delete;

  // One fetch now; the error text, or empty on success (the new keys are in the source).
  std::string fetch_once();
  void start();

 private:
  void run();

  std::string url_text_;
  std::string url_shown_;  // in the log
  std::string ca_file_;
  double refresh_s_;
  std::shared_ptr<policy::JwksSource> source_;
  std::atomic<bool> cancel_{false};  // stops a fetch in progress at shutdown
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace pgwarden::core
