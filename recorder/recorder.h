// The recorder module: record format, per-core ring, segment/chain/seal logic and the offline
// readers. Nothing is recorded yet; the recorder issue fills this module in.
#pragma once

namespace pgwarden::recorder {

// Version of the on-disk record format; 0 means "no format defined yet".
inline constexpr int kFormatVersion = 0;

}  // namespace pgwarden::recorder
