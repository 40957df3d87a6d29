// IEEE-float WAV writer (format tag 3, 32-bit), interleaving planar channels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgegen {

// `planar` holds `channels` rows of `frames` samples ([channels, frames], C order).
// Throws RuntimeFailure on I/O errors.
void write_wav_f32(const std::string& path, const std::vector<float>& planar, int channels, int64_t frames, int sample_rate);

}  // namespace edgegen
