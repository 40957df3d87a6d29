// See sampler.h. Built with -ffp-contract=off so no FMA changes a rounding relative to numpy.
#include "sampler.h"

#include <cmath>

namespace edgegen {
namespace {

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

std::vector<float> gaussian_noise(uint64_t seed, size_t count) {
  const uint64_t key = splitmix64(seed);
  const double two_pi = 2.0 * 3.141592653589793;  // numpy: 2.0 * np.pi
  std::vector<float> out(count);
  for (size_t j = 0; 2 * j < count; ++j) {
    uint64_t a = splitmix64(key + 2 * j) >> 11;
    uint64_t b = splitmix64(key + 2 * j + 1) >> 11;
    double u1 = (double(a) + 1.0) * 0x1p-53;
    double u2 = double(b) * 0x1p-53;
    double r = std::sqrt(-2.0 * std::log(u1));
    out[2 * j] = float(r * std::cos(two_pi * u2));
    if (2 * j + 1 < count) out[2 * j + 1] = float(r * std::sin(two_pi * u2));
  }
  return out;
}

std::vector<float> pingpong_schedule(int steps, double logsnr_max, double logsnr_min, double init_noise_level) {
  const double s = init_noise_level;
  const double start = s >= 1.0 ? logsnr_max : std::log((1.0 - s) / s + 1e-6);
  std::vector<float> t(size_t(steps) + 1);
  const double step = (logsnr_min - start) / double(steps);
  for (int k = 0; k <= steps; ++k) {
    double logsnr = (k == steps) ? logsnr_min : double(k) * step + start;
    t[size_t(k)] = float(1.0 / (1.0 + std::exp(logsnr)));
  }
  t[0] = float(s);
  t[size_t(steps)] = 0.0f;
  return t;
}

}  // namespace edgegen
