#ifndef REROUTE_CBLAS_SHIM_H
#define REROUTE_CBLAS_SHIM_H
// OpenBLAS's cblas.h (also declares openblas_set_num_threads / get_config).
#include <cblas.h>
#endif
