// Minimal test harness for the C++ tests: CHECK(cond) records a failure with file:line and keeps
// going; CHECK_NEAR compares floats; main returns test_exit_code() (non-zero if anything failed).
#pragma once
#include <cmath>
#include <cstdio>

inline int& test_failures() { static int n = 0; return n; }

#define CHECK(cond) do { if (!(cond)) { ++test_failures(); \
    std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); \
    if (!(std::fabs(_a - _b) <= (tol))) { ++test_failures(); \
    std::fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s=%g %s=%g tol=%g\n", __FILE__, __LINE__, \
                 #a, _a, #b, _b, (double)(tol)); } } while (0)
#define CHECK_THROWS(stmt, ExcType) do { bool _t = false; try { stmt; } catch (const ExcType&) { _t = true; } \
    if (!_t) { ++test_failures(); std::fprintf(stderr, "%s:%d: expected %s from %s\n", __FILE__, __LINE__, #ExcType, #stmt); } } while (0)

inline int test_exit_code(const char* name) {
    if (test_failures()) { std::fprintf(stderr, "%s: %d failure(s)\n", name, test_failures()); return 1; }
    std::printf("%s: ok\n", name);
    return 0;
}
