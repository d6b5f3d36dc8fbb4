// GET /metrics: Prometheus text exposition of every core's counters and histograms.
#include <algorithm>
#include <ctime>
#include <string>

#include "core/admin.h"
#include "core/admin_http.h"
#include "core/log.h"
#include "core/worker.h"
#include "policy/classifier.h"
#include "policy/masking.h"

namespace pgwarden::core {

std::string AdminServer::metrics() const {
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    const Counter WorkerStats::*counter;
  };
  static const Metric kMetrics[] = {
      {"pgwarden_sessions_accepted_total", "counter", "Client connections accepted.",
       &WorkerStats::accepted},
      {"pgwarden_sessions", "gauge", "Client sessions open now.", &WorkerStats::sessions},
      {"pgwarden_statements_total", "counter", "Query, Parse and FunctionCall messages.",
       &WorkerStats::statements},
      {"pgwarden_statements_refused_policy_total", "counter",
       "Statements refused by the policy (deny or hold).", &WorkerStats::refused_policy},
      {"pgwarden_masked_messages_total", "counter",
       "Result rows, COPY rows, errors and notices changed by masking.", &WorkerStats::masked},
      {"pgwarden_model_divergences_total", "counter",
       "Sessions ended because a server reply was not what the pipeline model predicted.",
       &WorkerStats::model_divergences},
      {"pgwarden_statements_refused_recording_total", "counter",
       "Statements refused because they could not be recorded.", &WorkerStats::refused_recording},
      {"pgwarden_recording_failed", "gauge",
       "1 while this core cannot write its recording (statements are refused).",
       &WorkerStats::recording_failed},
      {"pgwarden_record_bytes_total", "counter", "Bytes written to segment files.",
       &WorkerStats::record_bytes},
      {"pgwarden_record_syncs_total", "counter",
       "Segment writes made durable (synced writes and fdatasyncs); per transaction it falls as "
       "sessions share them (group commit).",
       &WorkerStats::record_syncs},
      {"pgwarden_auth_failures_total", "counter", "Failed gateway logins.",
       &WorkerStats::auth_failures},
      {"pgwarden_protocol_errors_total", "counter", "Protocol violations (08P01).",
       &WorkerStats::protocol_errors},
      {"pgwarden_upstream_failures_total", "counter", "Upstream connections that failed.",
       &WorkerStats::upstream_failures},
      {"pgwarden_cancels_forwarded_total", "counter", "CancelRequests sent upstream or to a peer.",
       &WorkerStats::cancels_forwarded},
      {"pgwarden_cancels_to_peers_total", "counter",
       "CancelRequests for another instance's key, forwarded to that peer.",
       &WorkerStats::cancels_to_peers},
      {"pgwarden_cancels_dropped_total", "counter",
       "CancelRequests dropped: too many were being forwarded at once.",
       &WorkerStats::cancels_dropped},
  };
  std::string out;
  for (const Metric& m : kMetrics) {
    out +=
        std::string("# HELP ") + m.name + " " + m.help + "\n# TYPE " + m.name + " " + m.type + "\n";
    for (const Worker* w : control_.workers) {
      out += std::string(m.name) + "{core=\"" + std::to_string(w->index()) + "\"} " +
             std::to_string((w->stats().*m.counter).get()) + "\n";
    }
  }
  {
    static const char* kUpHelp =
        "1 if this core's last upstream connection attempt succeeded, 0 if it failed (a core "
        "that has made no attempt yet has no sample).";
    metric_header(out, "pgwarden_upstream_up", "gauge", kUpHelp);
    for (const Worker* w : control_.workers) {
      if (w->stats().upstream_tried.get() == 0) continue;  // no attempt yet: no sample
      out += "pgwarden_upstream_up{core=\"" + std::to_string(w->index()) + "\"} " +
             std::to_string(w->stats().upstream_up.get()) + "\n";
    }
  }
  struct Labelled {
    const char* value;
    const Counter WorkerStats::*counter;
  };
  static const Labelled kDecisions[] = {
      {"allow", &WorkerStats::decided_allow},       {"deny", &WorkerStats::decided_deny},
      {"hold", &WorkerStats::decided_hold},         {"approved", &WorkerStats::approvals_approved},
      {"refused", &WorkerStats::approvals_refused}, {"canceled", &WorkerStats::approvals_canceled},
  };
  metric_header(out, "pgwarden_decisions_total", "counter",
                "Statement policy judgements of Query, Parse and Bind messages (allow, deny, "
                "hold), and how held statements ended (approved; refused: denied or timed out; "
                "canceled: by the client or the session's end).");
  for (const Worker* w : control_.workers) {
    for (const Labelled& d : kDecisions) {
      out += "pgwarden_decisions_total{core=\"" + std::to_string(w->index()) + "\",decision=\"" +
             d.value + "\"} " + std::to_string((w->stats().*d.counter).get()) + "\n";
    }
  }
  metric_header(out, "pgwarden_statements_by_class_total", "counter",
                "Query and Parse messages the policy classified, by statement class (a statement "
                "may have several classes; classes never seen are left out).");
  for (const Worker* w : control_.workers) {
    const auto& classes = w->stats().classes;
    for (std::size_t i = 0; i < classes.size(); ++i) {
      const std::uint64_t n = classes[i].get();
      if (n == 0) continue;
      out += "pgwarden_statements_by_class_total{core=\"" + std::to_string(w->index()) +
             "\",class=\"" + policy::class_name(static_cast<policy::StatementClass>(i)) + "\"} " +
             std::to_string(n) + "\n";
    }
  }
  metric_header(out, "pgwarden_masked_values_total", "counter",
                "Values masking replaced, by the detector that found them (column: a column "
                "rule).");
  for (const Worker* w : control_.workers) {
    for (std::size_t i = 0; i <= policy::Masker::kByColumnRule; ++i) {
      out += "pgwarden_masked_values_total{core=\"" + std::to_string(w->index()) +
             "\",detector=\"" + policy::Masker::detector_name(i) + "\"} " +
             std::to_string(w->masker_view().replaced_by(i)) + "\n";
    }
  }
  struct Latency {
    const char* name;
    const char* help;
    const Histogram WorkerStats::*histogram;
  };
  static const Latency kLatencies[] = {
      {"pgwarden_statement_gateway_seconds",
       "Latency pgwarden adds to a client statement (Query or Execute) before it goes upstream: "
       "from the start of the loop iteration that read it to the submission of its send, or, "
       "held by strict recording, until its record is durable.",
       &WorkerStats::gateway_latency},
      {"pgwarden_upstream_seconds",
       "A client statement's time upstream: from its send to its last reply.",
       &WorkerStats::upstream_latency},
      {"pgwarden_approval_wait_seconds", "How long held statements waited for their decision.",
       &WorkerStats::approval_wait},
      {"pgwarden_record_flush_seconds",
       "A recording write (synced with batch and strict durability), submission to completion.",
       &WorkerStats::record_flush},
  };
  for (const Latency& l : kLatencies) {
    metric_header(out, l.name, "histogram", l.help);
    for (const Worker* w : control_.workers) {
      (w->stats().*l.histogram).render(out, l.name, "core=\"" + std::to_string(w->index()) + "\"");
    }
  }
  const Approvals::Waiting waiting =
      control_.approvals != nullptr ? control_.approvals->waiting() : Approvals::Waiting{};
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const std::int64_t now_us = ts.tv_sec * 1'000'000LL + ts.tv_nsec / 1000;
  metric_header(out, "pgwarden_approvals_pending", "gauge",
                "Statements waiting for approval now (all cores).");
  out += "pgwarden_approvals_pending " + std::to_string(waiting.count) + "\n";
  metric_header(out, "pgwarden_approval_oldest_wait_seconds", "gauge",
                "How long the oldest statement waiting for approval has waited (0: none).");
  out += "pgwarden_approval_oldest_wait_seconds " +
         std::to_string(waiting.count == 0
                            ? 0
                            : std::max<std::int64_t>(0, now_us - waiting.oldest_us) / 1'000'000) +
         "\n";
  out +=
      "# HELP pgwarden_policy_version Policy reloads so far (0: no policy).\n"
      "# TYPE pgwarden_policy_version gauge\npgwarden_policy_version " +
      std::to_string(control_.policy_version.load()) + "\n";
  out +=
      "# HELP pgwarden_admin_connections Admin API connections open now.\n"
      "# TYPE pgwarden_admin_connections gauge\npgwarden_admin_connections " +
      std::to_string(http_->connections()) + "\n";
  out +=
      "# HELP pgwarden_log_lines_dropped_total Log lines lost because stderr was too slow (or "
      "failing).\n# TYPE pgwarden_log_lines_dropped_total counter\n"
      "pgwarden_log_lines_dropped_total " +
      std::to_string(log_lines_dropped()) +
      "\n# HELP pgwarden_log_lines_suppressed_total Log lines not written by the per-message "
      "rate limit (--log-rate-limit).\n# TYPE pgwarden_log_lines_suppressed_total counter\n"
      "pgwarden_log_lines_suppressed_total " +
      std::to_string(log_lines_suppressed()) + "\n";
  return out;
}

}  // namespace pgwarden::core
