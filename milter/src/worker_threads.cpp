#include "worker_threads.hpp"

#include <pthread.h>

#include "coexist/system_error.hpp"

namespace coexist::milter {

void set_default_thread_stack(std::size_t bytes) {
    pthread_attr_t attr;
    if (int rc = ::pthread_getattr_default_np(&attr); rc != 0) throw SystemError("pthread_getattr_default_np", rc);
    struct DestroyAtExit {
        pthread_attr_t& a;
        ~DestroyAtExit() { ::pthread_attr_destroy(&a); }
    } destroy{attr};
    if (int rc = ::pthread_attr_setstacksize(&attr, bytes); rc != 0) throw SystemError("pthread_attr_setstacksize", rc);
    if (int rc = ::pthread_setattr_default_np(&attr); rc != 0) throw SystemError("pthread_setattr_default_np", rc);
}

}  // namespace coexist::milter
