// The pip wheel ships libexecutorch_threadpool.so but not extension/threadpool/threadpool.h, so the two
// exported member functions used here are declared locally when the header is absent (their mangled names
// are what the library exports: ThreadPool::_unsafe_reset_threadpool(unsigned int),
// ThreadPool::get_thread_count() const, get_threadpool()). A source build (Android) has the real header.
#include "threadpool.h"

#include <cstddef>
#include <cstdint>

#if __has_include(<executorch/extension/threadpool/threadpool.h>)
#include <executorch/extension/threadpool/threadpool.h>
#else
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
#endif

#include "errors.h"

namespace edgegen {

void set_num_threads(int n) {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr || !pool->_unsafe_reset_threadpool(uint32_t(n))) {
    throw RuntimeFailure("could not resize the ExecuTorch thread pool to " + std::to_string(n) + " threads");
  }
}

int num_threads() {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  return pool ? int(pool->get_thread_count()) : 1;
}

}  // namespace edgegen
