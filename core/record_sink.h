// Where a session's records go: the core's RecordLog, or a memory sink in stage tests.
#pragma once

#include <cstdint>
#include <string>

#include "recorder/format.h"

namespace pgwarden::core {

enum class Durability : std::uint8_t { None, Batch, Strict };

// Told when the records it waits for are durable (strict recording).
class DurabilityWaiter {
 public:
  virtual void on_record_durable() = 0;

 protected:
  ~DurabilityWaiter() = default;
};

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // A payload to fill and append (reset with the current time and the session id).
  virtual recorder::Payload& payload(std::uint64_t session) = 0;
  // Appends the payload from payload(); returns the logical offset at which it ends.
  virtual std::uint64_t append(recorder::RecordType type) = 0;
  // Adds a number field to the record that ended at `end` (as append() returned), when nothing
  // was appended since, it is of `type` and it is not yet being written; returns its new end, or
  // 0 when it cannot be (then append a record of its own).
  virtual std::uint64_t extend_last(recorder::RecordType type, std::uint64_t end, recorder::Field f,
                                    std::uint64_t value) = 0;
  // False while writing fails or the unwritten backlog is over its bound.
  virtual bool accepting() const noexcept = 0;
  // Room for records that are not statements (outcomes, session ends) while writing fails.
  virtual bool has_room() const noexcept = 0;
  virtual const std::string& failure() const noexcept = 0;
  virtual Durability durability() const noexcept = 0;
  virtual std::uint64_t synced() const noexcept = 0;
  // Strict mode: `w` is told once everything up to `offset` is synced.
  virtual void wait_durable(DurabilityWaiter& w, std::uint64_t offset) = 0;
  virtual void forget(DurabilityWaiter& w) = 0;
};

}  // namespace pgwarden::core
