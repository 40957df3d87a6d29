// WAV I/O and init-audio preparation (audio-to-audio).
//
//   write_wav_f32(path, planar, channels, frames, sample_rate)      IEEE-float WAV (format tag 3, 32-bit)
//   WavAudio in = read_wav(path);                                   [channels, frames] float32, one clear error if bad
//   InitAudio p = prepare_init_audio(in, 44100, 2, 524288);         [2, 524288] at the model's rate, + notes
//
// read_wav scales integer PCM like libsndfile / soundfile (int16 / 32768, int24 / 8388608, int32 / 2147483648,
// uint8: (x - 128) / 128), so a file reads to the same float32 numbers as edgegen.init_audio.read_init_audio.
// prepare_init_audio follows edgegen.init_audio.prepare_init_audio step for step: the same windowed-sinc
// resampler (Hann, 6 zero crossings, rolloff 0.99, same phases and offsets), then crop (the start is kept) or
// zero-pad at the end to the model's length, then mono duplicated / extra channels dropped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgegen {

// `planar` holds `channels` rows of `frames` samples ([channels, frames], C order).
// Throws RuntimeFailure on I/O errors.
void write_wav_f32(const std::string& path, const std::vector<float>& planar, int channels, int64_t frames, int sample_rate);

struct WavAudio {
  int sample_rate = 0;
  int channels = 0;
  int64_t frames = 0;
  std::vector<float> planar;  // [channels, frames] C order
};

// Reads a RIFF/WAVE file: PCM 8/16/24/32-bit or IEEE float 32/64-bit (plain or WAVE_FORMAT_EXTENSIBLE). Throws
// InputError naming `what` (e.g. "--init-audio take.wav") for a missing or unreadable file, another format, no
// samples, or NaN/inf samples.
WavAudio read_wav(const std::string& path, const std::string& what);

struct InitAudio {
  std::vector<float> planar;       // [channels, length] C order at the model's rate
  std::vector<std::string> notes;  // one line per change made (resampled / cropped / padded / mono duplicated)
};

// `audio` brought to `sample_rate`, `channels` and `length` samples; see the top of this file.
InitAudio prepare_init_audio(const WavAudio& audio, int sample_rate, int channels, int64_t length);

// Windowed-sinc resampling of `n` samples from `orig` Hz to `target` Hz, keeping only the first `keep` outputs
// (of ceil(n * target / orig)): the samples edgegen.init_audio.resample gives, up to float32 summation order.
std::vector<float> resample(const float* x, int64_t n, int orig, int target, int64_t keep);

}  // namespace edgegen
