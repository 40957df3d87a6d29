// Sizing ExecuTorch's shared thread pool (XNNPACK and the optimized kernels run on it).
#pragma once

namespace edgegen {

// Resets the pool to `n` threads (n >= 1). Call before generate(), never during one.
void set_num_threads(int n);

// Current pool size (the runtime's default is the number of performant cores).
int num_threads();

}  // namespace edgegen
