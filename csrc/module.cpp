#include "registry.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "megapmc C++ core: Megatron-compatible indexed-dataset builder and dataset index helpers";
  register_indexed_dataset(m);
  register_dataset_helpers(m);
}
