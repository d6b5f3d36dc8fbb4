#include "core/record_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>
#include <stdexcept>

#include "core/log.h"
#include "core/ops.h"
#include "core/worker.h"
#include "recorder/reader.h"

namespace pgwarden::core {

namespace rec = pgwarden::recorder;

namespace {

// none/batch write at most every --record-batch-ms, unless this much accumulated:
constexpr std::size_t kFlushBytes = 256u << 10;
constexpr std::int64_t kRetryNs = 200'000'000;  // after a failure

Durability parse_durability(const std::string& s) {
  return s == "none" ? Durability::None : s == "strict" ? Durability::Strict : Durability::Batch;
}

bool write_all(int fd, const std::string& data, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

RecordLog::RecordLog(Worker& worker, unsigned core, const Config& config, std::string key)
    : w_(worker),
      core_(core),
      durability_(parse_durability(config.record_durability)),
      max_segment_bytes_(config.record_segment_bytes),
      max_segment_age_ns_(static_cast<std::int64_t>(config.record_segment_age_s * 1e9)),
      max_backlog_(config.record_max_backlog),
      batch_ns_(std::int64_t(config.record_batch_ms) * 1'000'000),
      writer_(core, std::move(key)) {
  char name[32];
  std::snprintf(name, sizeof name, "/core-%02u", core);
  dir_ = config.record_dir + name;
  batch_delay_.tv_sec = batch_ns_ / 1'000'000'000;
  batch_delay_.tv_nsec = batch_ns_ % 1'000'000'000;
}

RecordLog::~RecordLog() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (fd_ >= 0) ::close(fd_);
  if (sealed_fd_ >= 0) ::close(sealed_fd_);
  for (const Job& j : jobs_) {
    if (j.close_after && j.fd >= 0) ::close(j.fd);
  }
}

// Record times come from the core's loop clock (read once per wake-up) plus the wall clock's
// offset from it, re-read every 100 ms: no clock read per record.
std::int64_t RecordLog::now_us() {
  const std::int64_t mono = w_.now_ns();
  if (mono == 0 || mono - offset_read_ns_ >= 100'000'000 || mono < offset_read_ns_) {
    timespec real{}, steady{};
    clock_gettime(CLOCK_REALTIME, &real);
    clock_gettime(CLOCK_MONOTONIC, &steady);
    const std::int64_t real_ns = std::int64_t(real.tv_sec) * 1'000'000'000 + real.tv_nsec;
    const std::int64_t steady_ns = std::int64_t(steady.tv_sec) * 1'000'000'000 + steady.tv_nsec;
    if (mono == 0) return real_ns / 1000;
    wall_offset_ns_ = real_ns - steady_ns;
    offset_read_ns_ = mono;
  }
  return (mono + wall_offset_ns_) / 1000;
}

int RecordLog::open_segment(std::uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof name, "/%08llu.pwrec", static_cast<unsigned long long>(seq));
  const std::string path = dir_ + name;
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

void RecordLog::open() {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create " + dir_ + ": " + std::strerror(errno));
  }
  const std::string root = dir_.substr(0, dir_.rfind('/'));
  // Held for the gateway's life: verify knows the newest segment is open, and a second gateway
  // cannot record into the same directory.
  lock_fd_ = ::open(rec::lock_path(root, core_).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("cannot lock " + rec::lock_path(root, core_) + ": " +
                             (errno == EWOULDBLOCK ? std::string("another gateway records here")
                                                   : std::string(std::strerror(errno))));
  }
  const rec::Resume r = rec::resume_point(root, core_, writer_.key());
  if (!r.ok) throw std::runtime_error("recording: " + r.problem);
  std::uint64_t seq = r.last_seq + 1;
  std::string prev = r.last_tail;
  if (r.last_seq != 0 && !r.last_sealed) {
    if (r.last_records == 0) {
      ::unlink(r.last_path.c_str());  // created, nothing in it: reuse its number
      seq = r.last_seq;
    } else {
      // Stopped abruptly: cut off a partial record, then seal what is there, saying so.
      const int fd = ::open(r.last_path.c_str(), O_WRONLY | O_CLOEXEC);
      struct stat st {};
      if (fd < 0 || ::fstat(fd, &st) != 0) {
        throw std::runtime_error("cannot open " + r.last_path + ": " + std::strerror(errno));
      }
      const auto dropped = static_cast<std::uint64_t>(st.st_size) - r.last_valid_bytes;
      writer_.resume(r.version, r.last_seq, r.last_chain, r.last_records, r.last_valid_bytes);
      writer_.seal(
          now_us(), false,
          "recovered after an abrupt stop; " + std::to_string(dropped) +
              (r.zero_tail != 0 ? " bytes of a zero-filled tail dropped"
                                : " bytes of a partial record or unchained batch dropped"));
      if (::ftruncate(fd, static_cast<off_t>(r.last_valid_bytes)) != 0 ||
          !write_all(fd, writer_.take(), r.last_valid_bytes) || ::fdatasync(fd) != 0) {
        const int e = errno;
        ::close(fd);
        throw std::runtime_error("cannot seal " + r.last_path + ": " + std::strerror(e));
      }
      ::close(fd);
      PGW_WARN(
          "recording: %s was left unsealed by an abrupt stop; sealed it (%llu partial bytes "
          "dropped)",
          r.last_path.c_str(), static_cast<unsigned long long>(dropped));
      prev = writer_.tail();
    }
  }
  fd_ = open_segment(seq);
  if (fd_ < 0)
    throw std::runtime_error("cannot create a segment in " + dir_ + ": " + std::strerror(errno));
  writer_.begin(seq, prev, now_us());
  appended_ += writer_.pending_size();
  segment_started_ns_ = w_.now_ns();
}

rec::Payload& RecordLog::payload(std::uint64_t session) {
  payload_.reset(now_us(), session);
  return payload_;
}

bool RecordLog::due_by_size() const noexcept {
  return writer_.pending_size() >= kFlushBytes || writer_.segment_bytes() >= max_segment_bytes_;
}

std::uint64_t RecordLog::append(rec::RecordType type) {
  const std::size_t before = writer_.pending_size();
  if (before == 0) pending_since_ns_ = w_.now_ns();
  writer_.append_in_place(type, payload_);
  const std::size_t after = writer_.pending_size();
  appended_ += after - before;
  // A first unwritten record starts the batch's deadline; enough of them make a write due now,
  // a full segment its rotation.
  if (before == 0 || due_by_size()) changed_ = true;
  return appended_;
}

std::uint64_t RecordLog::extend_last(rec::RecordType type, std::uint64_t end, rec::Field f,
                                     std::uint64_t value) {
  if (end != appended_) return 0;
  const std::size_t before = writer_.pending_size();
  if (!writer_.extend_last(type, f, value)) return 0;
  appended_ += writer_.pending_size() - before;
  if (due_by_size()) changed_ = true;
  return appended_;
}

void RecordLog::wait_durable(DurabilityWaiter& w, std::uint64_t offset) {
  changed_ = true;
  for (auto& [who, until] : waiters_) {
    if (who == &w) {
      until = std::max(until, offset);
      return;
    }
  }
  waiters_.emplace_back(&w, offset);
}

void RecordLog::forget(DurabilityWaiter& w) {
  std::erase_if(waiters_, [&](const auto& x) { return x.first == &w; });
}

void RecordLog::release_waiters() {
  // A released session may append and wait again: walk a snapshot.
  auto ready = std::partition(waiters_.begin(), waiters_.end(),
                              [&](const auto& w) { return w.second > synced_; });
  std::vector<DurabilityWaiter*> go;
  for (auto it = ready; it != waiters_.end(); ++it) go.push_back(it->first);
  waiters_.erase(ready, waiters_.end());
  for (DurabilityWaiter* w : go) w->on_record_durable();
}

void RecordLog::set_failed(const std::string& why) {
  if (!failed_) {
    PGW_ERROR(
        "ALERT recording on core %u failed: %s. New statements are refused until "
        "recording works again.",
        core_, why.c_str());
  }
  failed_ = true;
  failure_text_ = why;
  w_.mutable_stats().recording_failed.set(1);
  retry_at_ns_ = w_.now_ns() + kRetryNs;
}

void RecordLog::clear_failure() {
  if (!failed_) return;
  failed_ = false;
  w_.mutable_stats().recording_failed.set(0);
  PGW_WARN("recording on core %u works again; statements are accepted", core_);
}

void RecordLog::rotate(std::int64_t now_ns) {
  const std::size_t before = writer_.pending_size();
  writer_.seal(now_us(), false);
  appended_ += writer_.pending_size() - before;
  Job j;
  j.fd = fd_;
  j.file_offset = file_offset_;
  j.data = writer_.take();  // rotation: rare, a buffer of its own
  j.logical_end = appended_;
  j.close_after = true;
  jobs_.push_back(std::move(j));
  const std::uint64_t seq = writer_.segment() + 1;
  fd_ = open_segment(seq);
  if (fd_ < 0)
    set_failed("cannot create segment " + std::to_string(seq) + ": " + std::strerror(errno));
  file_offset_ = 0;
  segment_started_ns_ = now_ns;
  writer_.begin(seq, writer_.tail(), now_us());
  appended_ += writer_.pending_size();
}

void RecordLog::decide(std::int64_t now_ns) {
  // Until the end below says otherwise, every call decides.
  changed_ = false;
  recheck_ns_ = now_ns;
  if (failed_ && now_ns < retry_at_ns_) return;
  if (fd_ < 0) {  // a rotation could not create the next file: retry
    fd_ = open_segment(writer_.segment());
    if (fd_ < 0) {
      set_failed("cannot create segment " + std::to_string(writer_.segment()) + ": " +
                 std::strerror(errno));
      return;
    }
  }
  // A sealed segment whose sync failed: retried before anything else.
  if (sealed_fd_ >= 0) {
    start_sync();
    return;
  }
  if (jobs_.empty() && writer_.records() > 1 &&
      (writer_.segment_bytes() >= max_segment_bytes_ ||
       now_ns - segment_started_ns_ >= max_segment_age_ns_)) {
    rotate(now_ns);
  }
  // Writes are batched: now if a strict session waits, if a lot accumulated, or if the oldest
  // unwritten record is --record-batch-ms old; otherwise a timer brings the loop back.
  const bool flush_due =
      writer_.pending_size() != 0 &&
      ((durability_ == Durability::Strict && !waiters_.empty()) ||
       writer_.pending_size() >= kFlushBytes || now_ns - pending_since_ns_ >= batch_ns_ || failed_);
  if (jobs_.empty() && flush_due) {
    Job j;
    j.fd = fd_;
    j.file_offset = file_offset_;
    j.data = std::move(spare_);
    writer_.take_into(j.data);
    file_offset_ += j.data.size();
    j.logical_end = appended_;
    jobs_.push_back(std::move(j));
  }
  if (!jobs_.empty()) {
    if (jobs_.front().done == 0) write_started_ns_ = now_ns;
    start_write();
  } else if (writer_.pending_size() != 0 && !timer_armed_) {
    io_uring_sqe* e = w_.get_sqe();
    io_uring_prep_timeout(e, &batch_delay_, 0, 0);
    io_uring_sqe_set_data64(e, tag(this, kRecordTimer));
    timer_armed_ = true;
  }
  if (!failed_) {
    // What time alone can make due: the batch's write, the segment's rotation (an age too
    // large to add is never reached).
    recheck_ns_ =
        max_segment_age_ns_ > std::numeric_limits<std::int64_t>::max() - segment_started_ns_
            ? std::numeric_limits<std::int64_t>::max()
            : segment_started_ns_ + max_segment_age_ns_;
    if (writer_.pending_size() != 0)
      recheck_ns_ = std::min(recheck_ns_, pending_since_ns_ + batch_ns_);
  }
}

void RecordLog::start_write() {
  Job& j = jobs_.front();
  io_uring_sqe* e = w_.get_sqe();
  io_uring_prep_write(e, j.fd, j.data.data() + j.done,
                      static_cast<unsigned>(j.data.size() - j.done), j.file_offset + j.done);
  // batch and strict: the write is synced (as fdatasync of its range) before it completes. One
  // trip through io_uring's worker instead of a write and then an fsync: measured cheaper.
  if (durability_ != Durability::None) e->rw_flags = RWF_DSYNC;
  io_uring_sqe_set_data64(e, tag(this, kRecordWrite));
  io_inflight_ = true;
}

void RecordLog::start_sync() {
  io_uring_sqe* e = w_.get_sqe();
  io_uring_prep_fsync(e, sealed_fd_, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(e, tag(this, kRecordSync));
  io_inflight_ = true;
  sync_target_ = written_;
}

void RecordLog::on_write(int res, std::int64_t now_ns) {
  io_inflight_ = false;
  changed_ = true;
  if (res <= 0) {
    set_failed(std::string("writing a segment: ") + std::strerror(res == 0 ? ENOSPC : -res));
    return;
  }
  Job& j = jobs_.front();
  j.done += static_cast<std::size_t>(res);
  w_.mutable_stats().record_bytes.add(static_cast<std::uint64_t>(res));
  if (j.done < j.data.size()) {
    submit(now_ns);  // short write: the rest, now
    return;
  }
  clear_failure();
  w_.mutable_stats().record_flush.observe(now_ns - write_started_ns_);
  written_ = j.logical_end;
  const bool close_after = j.close_after;
  const int fd = j.fd;
  // Its buffer serves the next flush (unless a burst made it large).
  if (jobs_.front().data.capacity() <= (1u << 20)) spare_ = std::move(jobs_.front().data);
  jobs_.erase(jobs_.begin());
  if (close_after) {
    // The sealed segment is synced whatever the durability, then closed.
    sealed_fd_ = fd;
    start_sync();
    return;
  }
  if (durability_ != Durability::None) {  // written with RWF_DSYNC: durable now
    w_.mutable_stats().record_syncs.add(1);
    synced_ = written_;
    release_waiters();
  }
}

void RecordLog::on_sync(int res, std::int64_t /*now_ns*/) {
  io_inflight_ = false;
  changed_ = true;
  if (res < 0) {
    set_failed(std::string("fdatasync: ") + std::strerror(-res));
    return;  // sealed_fd_ stays: submit() retries
  }
  clear_failure();
  w_.mutable_stats().record_syncs.add(1);
  ::close(sealed_fd_);
  sealed_fd_ = -1;
  synced_ = std::max(synced_, sync_target_);
  release_waiters();
}

void RecordLog::on_timer(std::int64_t /*now_ns*/) {
  timer_armed_ = false;
  changed_ = true;
}

void RecordLog::close() {
  writer_.seal(now_us(), true);
  bool ok = true;
  if (sealed_fd_ >= 0) {  // its sync failed and was not retried yet
    ok = ::fdatasync(sealed_fd_) == 0;
    ::close(sealed_fd_);
    sealed_fd_ = -1;
  }
  for (Job& j : jobs_) {
    ok = ok && write_all(j.fd, j.data.substr(j.done), j.file_offset + j.done);
    if (j.close_after) {
      ok = ok && ::fdatasync(j.fd) == 0;
      ::close(j.fd);
      j.fd = -1;
    }
  }
  jobs_.clear();
  if (fd_ >= 0) {
    ok = ok && write_all(fd_, writer_.take(), file_offset_) && ::fdatasync(fd_) == 0;
    ::close(fd_);
    fd_ = -1;
  }
  if (!ok) {
    PGW_ERROR("recording on core %u: could not write the final records: %s", core_,
              std::strerror(errno));
  }
}

}  // namespace pgwarden::core
