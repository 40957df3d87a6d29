// SHA-256 of a file (FIPS 180-4), streamed in 1 MiB blocks; used to verify bundle artifacts.
#pragma once

#include <string>

namespace edgegen {

// Lower-case hex digest of the file at `path`; throws InputError when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace edgegen
