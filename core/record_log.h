// One core's recording: records are appended to an in-memory buffer on the hot path (no locks, no
// syscalls) and the same core writes them to its own segment files with io_uring writes, in
// order, one write in flight at a time (so each write carries everything appended meanwhile: group
// commit). Durability per --record-durability: none (page cache), batch (writes at most every
// --record-batch-ms, default 10, each synced: RWF_DSYNC), strict (the session holds a statement
// until the synced write of its record completes). A sealed segment is fdatasync'd and closed. When
// a write fails or the backlog passes its bound, accepting() turns false and sessions refuse new
// statements until a retry succeeds: nothing is forwarded unrecorded.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/flags.h"
#include "core/record_sink.h"
#include "recorder/format.h"

namespace pgwarden::core {

class Worker;

class alignas(16) RecordLog final : public RecordSink {
 public:
  RecordLog(Worker& worker, unsigned core, const Config& config, std::string key);
  ~RecordLog();
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // Recovers this core's last segment (a crash leaves it unsealed, perhaps with a partial record:
  // cut off and sealed) and opens a new one. Synchronous; at start-up only. Throws on failure.
  void open();
  // Seals the current segment as final and writes it out synchronously (shutdown).
  void close();

  Durability durability() const noexcept override { return durability_; }
  bool accepting() const noexcept override { return !failed_ && backlog() < max_backlog_; }
  const std::string& failure() const noexcept override { return failure_text_; }
  bool has_room() const noexcept override { return backlog() < max_backlog_; }
  recorder::Payload& payload(std::uint64_t session) override;
  std::uint64_t append(recorder::RecordType type) override;
  std::uint64_t extend_last(recorder::RecordType type, std::uint64_t end, recorder::Field f,
                            std::uint64_t value) override;
  std::uint64_t synced() const noexcept override { return synced_; }
  void wait_durable(DurabilityWaiter& w, std::uint64_t offset) override;
  void forget(DurabilityWaiter& w) override;

  // Worker hooks.
  // Once per loop iteration, before the ring is entered. Nothing appended or completed since
  // the last call and no deadline reached, the usual case, is told inline.
  void submit(std::int64_t now_ns) {
    if (io_inflight_ || (!changed_ && now_ns < recheck_ns_)) return;
    decide(now_ns);
  }
  void on_write(int res, std::int64_t now_ns);
  void on_sync(int res, std::int64_t now_ns);
  void on_timer(std::int64_t now_ns);
  bool idle() const noexcept { return !io_inflight_ && !timer_armed_; }

 private:
  struct Job {
    int fd = -1;
    std::uint64_t file_offset = 0;
    std::string data;
    std::size_t done = 0;
    std::uint64_t logical_end = 0;
    bool close_after = false;
  };
  std::uint64_t backlog() const noexcept { return appended_ - written_; }
  bool due_by_size() const noexcept;  // a write (or a rotation) is due for what is pending
  void decide(std::int64_t now_ns);   // submit's work: start a write, a sync or the timer
  std::int64_t now_us();
  std::int64_t wall_offset_ns_ = 0;  // CLOCK_REALTIME - CLOCK_MONOTONIC
  std::int64_t offset_read_ns_ = 0;  // when (loop clock)
  int open_segment(std::uint64_t seq);
  void rotate(std::int64_t now_ns);
  void start_write();
  void start_sync();  // of sealed_fd_
  void set_failed(const std::string& why);
  void clear_failure();
  void release_waiters();

  Worker& w_;
  unsigned core_;
  std::string dir_;  // this core's directory
  Durability durability_;
  std::uint64_t max_segment_bytes_;
  std::int64_t max_segment_age_ns_;
  std::uint64_t max_backlog_;
  std::int64_t batch_ns_;  // --record-batch-ms
  recorder::SegmentWriter writer_;
  recorder::Payload payload_;
  int fd_ = -1;
  int lock_fd_ = -1;               // flock on core-NN/.lock, held while this gateway records
  std::uint64_t file_offset_ = 0;  // where the next job starts in the current file
  std::int64_t segment_started_ns_ = 0;
  std::vector<Job> jobs_;  // a FIFO of at most a few: erase at the front keeps its capacity
  std::string spare_;      // a written job's buffer, reused by the next (no allocation per flush)
  bool io_inflight_ = false;
  // submit() has something to decide: a batch began or grew past its size, a write, sync or
  // timer completed, or a strict session waits; else not before recheck_ns_ (a batch's or the
  // segment's deadline).
  bool changed_ = true;
  std::int64_t recheck_ns_ = 0;
  std::int64_t write_started_ns_ = 0;  // the write in flight (for its latency)
  bool timer_armed_ = false;
  std::uint64_t sync_target_ = 0;      // logical offset the sync in flight covers
  std::int64_t pending_since_ns_ = 0;  // when the oldest unwritten record was appended
  int sealed_fd_ = -1;  // a sealed segment to fdatasync, then close (again after a failure)
  std::uint64_t appended_ = 0, written_ = 0, synced_ = 0;  // logical byte offsets
  bool failed_ = false;
  std::string failure_text_;
  std::int64_t retry_at_ns_ = 0;
  std::vector<std::pair<DurabilityWaiter*, std::uint64_t>> waiters_;
  __kernel_timespec batch_delay_{};
};

}  // namespace pgwarden::core
