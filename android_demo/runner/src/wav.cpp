// See wav.h. The writer emits RIFF/WAVE with fmt (18 bytes, WAVE_FORMAT_IEEE_FLOAT), fact and data chunks; the reader
// takes the common PCM and float layouts. Little-endian hosts only (x86-64, arm64). Built with -ffp-contract=off:
// the resampler's sums round each product and sum in float32, as torch's conv1d does.
#include "wav.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <sys/stat.h>

#include "errors.h"

namespace edgegen {
namespace {

void put16(std::vector<uint8_t>& b, uint16_t v) { b.push_back(uint8_t(v)); b.push_back(uint8_t(v >> 8)); }
void put32(std::vector<uint8_t>& b, uint32_t v) { for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i))); }
void tag(std::vector<uint8_t>& b, const char* t) { b.insert(b.end(), t, t + 4); }

uint32_t get16(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8; }
uint32_t get32(const uint8_t* p) { return get16(p) | get16(p + 2) << 16; }

// edgegen.init_audio's resampler constants (torchaudio's Resample defaults, which upstream calls).
constexpr double kZeroCrossings = 6.0, kRolloff = 0.99;
constexpr double kPi = 3.141592653589793;  // c10::pi<double>, math.pi

constexpr const char* kWavFix = "; give a WAV file (16/24/32-bit PCM or 32-bit float)";

// Samples of one frame layout -> float32 with libsndfile's scaling (what soundfile.read(dtype="float32") returns).
float sample(const uint8_t* p, int tag, int bits) {
  if (tag == 3) {
    if (bits == 32) {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    double d;
    std::memcpy(&d, p, 8);
    return float(d);
  }
  switch (bits) {
    case 8: return float(int(p[0]) - 128) * (1.0f / 128.0f);  // 8-bit WAV is unsigned
    case 16: return float(int16_t(get16(p))) * (1.0f / 32768.0f);
    case 24: return float(int32_t(get16(p) << 8 | uint32_t(p[2]) << 24) >> 8) * (1.0f / 8388608.0f);
    default: return float(int32_t(get32(p))) * (1.0f / 2147483648.0f);  // rounds to float first, as libsndfile does
  }
}

std::string fixed2(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}


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

WavAudio read_wav(const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw InputError(what + ": no such file");
    throw InputError(what + " cannot be read (" + std::strerror(errno) + ")" + kWavFix);
  }
  if (!S_ISREG(st.st_mode)) throw InputError(what + " is not a regular file (a directory, device or FIFO)" + kWavFix);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(what + " cannot be read (" + std::strerror(errno) + "); check its permissions");
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(what + " cannot be read (I/O error); check the file");
  if (bytes.size() < 12 || std::memcmp(bytes.data(), "RIFF", 4) != 0 || std::memcmp(bytes.data() + 8, "WAVE", 4) != 0) {
    throw InputError(what + " is not a WAV file (no RIFF/WAVE header); convert it to WAV (16/24/32-bit PCM or 32-bit float)");
  }
  // Walk the chunks (each padded to an even size); a data chunk longer than the file (a writer that never came back
  // to fix the size, or a cut file) keeps the whole frames present, as libsndfile does.
  const uint8_t* fmt = nullptr;
  size_t fmt_size = 0, data_at = 0, data_size = 0;
  bool have_data = false;
  for (size_t at = 12; at + 8 <= bytes.size();) {
    const uint8_t* chunk = bytes.data() + at;
    const size_t size = get32(chunk + 4), body = at + 8, left = bytes.size() - body;
    if (std::memcmp(chunk, "fmt ", 4) == 0 && !fmt) {
      fmt = chunk + 8;
      fmt_size = std::min(size, left);
    } else if (std::memcmp(chunk, "data", 4) == 0 && !have_data) {
      have_data = true;
      data_at = body;
      data_size = std::min(size, left);
    }
    if (size > left) break;
    at = body + size + (size & 1);
  }
  if (!fmt || fmt_size < 16) throw InputError(what + " has no valid 'fmt ' chunk (a damaged WAV file)" + kWavFix);
  if (!have_data) throw InputError(what + " has no 'data' chunk (a damaged WAV file)" + kWavFix);
  int tag = int(get16(fmt));
  const int channels = int(get16(fmt + 2)), bits = int(get16(fmt + 14)), block = int(get16(fmt + 12));
  const uint32_t rate = get32(fmt + 4);
  if (tag == 0xFFFE && fmt_size >= 40) tag = int(get16(fmt + 24));  // WAVE_FORMAT_EXTENSIBLE: the subformat GUID's tag
  const bool pcm = tag == 1 && (bits == 8 || bits == 16 || bits == 24 || bits == 32);
  const bool ieee = tag == 3 && (bits == 32 || bits == 64);
  if (!pcm && !ieee) {
    throw InputError(what + " uses an unsupported WAV encoding (format tag " + std::to_string(tag) + ", " + std::to_string(bits) +
                     "-bit)" + kWavFix);
  }
  if (channels < 1 || rate < 1 || rate > 0x7FFFFFFF || block != channels * bits / 8) {
    throw InputError(what + " has an inconsistent 'fmt ' chunk (" + std::to_string(channels) + " channels, " + std::to_string(rate) +
                     " Hz, block " + std::to_string(block) + " bytes)" + kWavFix);
  }
  WavAudio a;
  a.sample_rate = int(rate);
  a.channels = channels;
  a.frames = int64_t(data_size / size_t(block));
  if (a.frames == 0) throw InputError(what + " holds no samples; give a recording of at least one sample");
  a.planar.resize(size_t(channels) * size_t(a.frames));
  const uint8_t* data = bytes.data() + data_at;
  const int width = bits / 8;
  size_t bad = 0;
  for (int64_t i = 0; i < a.frames; ++i) {
    for (int c = 0; c < channels; ++c) {
      const float v = sample(data + size_t(i) * size_t(block) + size_t(c * width), tag, bits);
      bad += std::isfinite(v) ? 0 : 1;
      a.planar[size_t(c) * size_t(a.frames) + size_t(i)] = v;
    }
  }
  if (bad) throw InputError(what + " holds " + std::to_string(bad) + " non-finite sample(s) (NaN or inf); give a recording of finite samples");
  return a;
}

std::vector<float> resample(const float* x, int64_t n, int orig_rate, int target_rate, int64_t keep) {
  // edgegen.init_audio.resample with the rates reduced by their gcd: output phase j of every group of `target`
  // outputs is a filter over input offsets -width .. width + orig - 1 around the group's first input sample.
  const int64_t g = std::gcd(int64_t(orig_rate), int64_t(target_rate));
  const int64_t orig = orig_rate / g, target = target_rate / g;
  const double cutoff = double(std::min(orig, target)) * kRolloff;
  const int64_t width = int64_t(std::ceil(kZeroCrossings * double(orig) / cutoff));
  const int64_t taps = 2 * width + orig;
  keep = std::min(keep, (target * n + orig - 1) / orig);  // Python keeps ceil(target * n / orig)

  // Kernels in double, cast to float32 like Python's `.to(audio.dtype)`. Only taps with |t| < 6 are stored: at the
  // clamp (|t| = 6) sinc * window is ~1e-49, which is 0 in float32, so the rest of a row adds nothing. Storing rows
  // whole would take target * taps values: 44101 -> 44100 Hz (gcd 1) would be 1.9e9 of them.
  const double half = kZeroCrossings * double(orig) / cutoff;
  std::vector<int64_t> first(static_cast<size_t>(target));
  std::vector<std::vector<float>> rows(static_cast<size_t>(target));
  for (int64_t j = 0; j < target; ++j) {
    const double centre = double(width) + double(orig) * double(j) / double(target);
    const int64_t lo = std::max<int64_t>(0, int64_t(std::floor(centre - half)) - 1);
    const int64_t hi = std::min<int64_t>(taps - 1, int64_t(std::ceil(centre + half)) + 1);
    first[size_t(j)] = lo;
    for (int64_t k = lo; k <= hi; ++k) {
      const double offset = double(k - width) / double(orig), phase = -(double(j) / double(target));
      const double t = std::clamp((offset + phase) * cutoff, -kZeroCrossings, kZeroCrossings);
      const double w = std::cos(t * kPi / kZeroCrossings / 2);
      const double sinc = t == 0.0 ? 1.0 : std::sin(kPi * t) / (kPi * t);  // torch.sinc
      rows[size_t(j)].push_back(float(sinc * (w * w) * cutoff / double(orig)));
    }
  }
  // y[f * target + j] = sum_k xpad[f * orig + k] * kernel[j][k], xpad = x zero-padded by `width` on the left.
  std::vector<float> y(size_t(std::max<int64_t>(keep, 0)));
  for (int64_t m = 0; m < keep; ++m) {
    const int64_t f = m / target, j = m % target;
    const std::vector<float>& row = rows[size_t(j)];
    const int64_t base = f * orig + first[size_t(j)] - width;  // input index of row[0]
    const int64_t from = std::max<int64_t>(0, -base), to = std::min<int64_t>(int64_t(row.size()), n - base);
    float acc = 0.0f;
    for (int64_t i = from; i < to; ++i) acc += x[base + i] * row[size_t(i)];
    y[size_t(m)] = acc;
  }
  return y;
}

InitAudio prepare_init_audio(const WavAudio& audio, int sample_rate, int channels, int64_t length) {
  InitAudio out;
  const int used = std::min(audio.channels, channels);  // more channels than the model's: the first ones
  std::vector<std::vector<float>> rows(static_cast<size_t>(used));
  int64_t n = audio.frames;
  for (int c = 0; c < used; ++c) {
    const float* src = audio.planar.data() + size_t(c) * size_t(audio.frames);
    if (audio.sample_rate != sample_rate) {
      rows[size_t(c)] = resample(src, audio.frames, audio.sample_rate, sample_rate, length);
    } else {
      rows[size_t(c)].assign(src, src + std::min(audio.frames, length));
    }
  }
  if (audio.sample_rate != sample_rate) {
    const int64_t g = std::gcd(int64_t(audio.sample_rate), int64_t(sample_rate));
    const int64_t orig = audio.sample_rate / g, target = sample_rate / g;
    n = (target * audio.frames + orig - 1) / orig;  // what a whole resample gives, before the crop
    out.notes.push_back("init audio resampled from " + std::to_string(audio.sample_rate) + " Hz to the model's " +
                        std::to_string(sample_rate) + " Hz");
  }
  const double sr = double(sample_rate);
  if (n > length) {
    out.notes.push_back("init audio cropped from " + fixed2(double(n) / sr) + " s to the model's " + fixed2(double(length) / sr) +
                        " s (its start is kept)");
  } else if (n < length) {
    out.notes.push_back("init audio (" + fixed2(double(n) / sr) + " s) padded with silence to the model's " +
                        fixed2(double(length) / sr) + " s");
  }
  if (audio.channels == 1 && channels > 1) {
    out.notes.push_back("mono init audio duplicated to stereo");
  } else if (audio.channels > channels) {
    out.notes.push_back("init audio has " + std::to_string(audio.channels) + " channels; the first " + std::to_string(channels) +
                        " are used");
  }
  out.planar.assign(size_t(channels) * size_t(length), 0.0f);  // zero padding at the end
  for (int c = 0; c < channels; ++c) {
    const std::vector<float>& row = rows[size_t(std::min(c, used - 1))];  // mono: every channel is channel 0
    std::copy(row.begin(), row.end(), out.planar.begin() + ptrdiff_t(size_t(c) * size_t(length)));
  }
  return out;
}

}  // namespace edgegen
