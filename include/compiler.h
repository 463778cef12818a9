/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_COMPILER_H
#define PBSLM_COMPILER_H

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define PRINTF_FMT(f, a) __attribute__((format(printf, f, a)))
#define UNUSED __attribute__((unused))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

/* Fuzz builds skip checksums a fuzzer cannot forge (tests/fuzz). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define FUZZING 1
#else
#define FUZZING 0
#endif

#endif
