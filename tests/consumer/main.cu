// The same program compiled by nvcc, which also sees the CUDA backend.
#include "main.cpp"
