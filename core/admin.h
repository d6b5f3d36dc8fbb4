// The admin endpoint (--admin-listen HOST:PORT, loopback only): GET /healthz, GET /readyz (503
// while draining or while a core's recording fails), GET /metrics (Prometheus text format), and
// POST /reload (reloads the policy, as SIGHUP does). One thread with blocking sockets and one
// request per connection: off the data path, it only reads the workers' counters.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "core/address.h"

namespace pgwarden::core {

struct Control;

class AdminServer {
 public:
  // `reload` reloads the policy and returns an error text, or empty on success.
  AdminServer(const Address& listen, Control& control, std::function<std::string()> reload);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  const std::string& bound() const noexcept { return bound_; }  // "127.0.0.1:PORT"

 private:
  void run();
  void handle(int fd);
  std::string metrics() const;

  Control& control_;
  std::function<std::string()> reload_;
  int fd_ = -1;
  std::string bound_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace pgwarden::core
