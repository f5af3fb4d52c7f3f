#pragma once
// CPU-only helpers shared by the CPU kernels.

// The hot loops are compiled twice, for baseline x86-64 and for AVX2 + FMA (x86-64-v3), and
// the loader picks the clone the machine supports: wheels stay portable, and the common
// machine gets 8-wide vectors. Each clone is deterministic on its own.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FC_CPU_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FC_CPU_MULTIVERSION
#endif
