// RIFF/WAVE with fmt (18 bytes, WAVE_FORMAT_IEEE_FLOAT), fact and data chunks; little-endian hosts only
// (x86-64, arm64).
#include "wav.h"

#include <cstdio>

#include "errors.h"

namespace edgegen {
namespace {

void put16(std::vector<uint8_t>& b, uint16_t v) { b.push_back(uint8_t(v)); b.push_back(uint8_t(v >> 8)); }
void put32(std::vector<uint8_t>& b, uint32_t v) { for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i))); }
void tag(std::vector<uint8_t>& b, const char* t) { b.insert(b.end(), t, t + 4); }

}  // namespace

void write_wav_f32(const std::string& path, const std::vector<float>& planar, int channels, int64_t frames, int sample_rate) {
  std::vector<float> interleaved(size_t(channels) * size_t(frames));
  for (int64_t i = 0; i < frames; ++i) {
    for (int c = 0; c < channels; ++c) interleaved[size_t(i) * channels + c] = planar[size_t(c) * frames + i];
  }
  uint32_t data_bytes = uint32_t(interleaved.size() * sizeof(float));
  std::vector<uint8_t> h;
  tag(h, "RIFF");
  put32(h, 4 + (8 + 18) + (8 + 4) + 8 + data_bytes);
  tag(h, "WAVE");
  tag(h, "fmt ");
  put32(h, 18);
  put16(h, 3);  // WAVE_FORMAT_IEEE_FLOAT
  put16(h, uint16_t(channels));
  put32(h, uint32_t(sample_rate));
  put32(h, uint32_t(sample_rate) * channels * 4);  // byte rate
  put16(h, uint16_t(channels * 4));                // block align
  put16(h, 32);                                    // bits per sample
  put16(h, 0);                                     // cbSize
  tag(h, "fact");
  put32(h, 4);
  put32(h, uint32_t(frames));
  tag(h, "data");
  put32(h, data_bytes);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw RuntimeFailure("cannot create " + path + "; check the directory exists and is writable");
  bool ok = std::fwrite(h.data(), 1, h.size(), f) == h.size() &&
            std::fwrite(interleaved.data(), sizeof(float), interleaved.size(), f) == interleaved.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw RuntimeFailure("failed writing " + path + " (disk full?)");
}

}  // namespace edgegen
