// Portable noise and the ping-pong schedule, bit-identical to edgegen/noise.py and edgegen's Python sampler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace edgegen {

// Standard-normal float32 values, a pure function of `seed` (splitmix64 counter + Box-Muller in
// float64, then float32), `count` elements in C order. Same numbers as edgegen.noise.gaussian_noise.
std::vector<float> gaussian_noise(uint64_t seed, size_t count);

// steps+1 float32 times, edgegen.sampler.schedule: logsnr = linspace(start, logsnr_min, steps+1) (numpy semantics,
// double), t = 1 / (1 + exp(logsnr)), then t[0] = init_noise_level, t[steps] = 0. start = logsnr_max for
// text-to-audio (init_noise_level 1); audio-to-audio starts the walk at the level S itself,
// start = log((1 - S) / S + 1e-6), so t falls monotonically from S (upstream stable-audio-tools 0.0.19's rule).
std::vector<float> pingpong_schedule(int steps, double logsnr_max, double logsnr_min, double init_noise_level = 1.0);

}  // namespace edgegen
