// Minimal .npy (format 1.0/2.0) reader for float32 and writer for float32 / int32, C order, little-endian.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgegen {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // C order, product(shape) elements
};

// Reads a little-endian float32 C-order array; throws InputError naming the file and the problem
// (wrong dtype, Fortran order, truncated data).
NpyArray read_npy_f32(const std::string& path);

// Writes `data` (C order) with `shape`; throws RuntimeFailure on I/O errors.
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
void write_npy_i32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data);

}  // namespace edgegen
