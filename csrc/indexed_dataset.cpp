#include "registry.h"
void register_indexed_dataset(pybind11::module_& m) {}
