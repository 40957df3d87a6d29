// Error types of the runner library: the message is one complete sentence that names the fix.
//
// InputError    bad usage, bundle, manifest, noise file or shape  -> CLI exit status 2
// RuntimeFailure ExecuTorch failed to load or execute, I/O failed  -> CLI exit status 1
#pragma once

#include <stdexcept>
#include <string>

namespace edgegen {

struct InputError : std::runtime_error {
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

struct RuntimeFailure : std::runtime_error {
  explicit RuntimeFailure(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace edgegen
