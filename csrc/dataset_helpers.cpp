#include "registry.h"
void register_dataset_helpers(pybind11::module_& m) {}
