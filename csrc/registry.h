// Each C++ source file registers its functions into the one extension module megapmc._C.
#pragma once
#include <pybind11/pybind11.h>

void register_indexed_dataset(pybind11::module_& m);  // indexed_dataset.cpp
void register_dataset_helpers(pybind11::module_& m);  // dataset_helpers.cpp
