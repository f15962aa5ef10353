// Facts about the machine and the process, for benchmarks.
#pragma once

#include <cstddef>

namespace specula {

double PeakRssMB();   // high-water resident set size of this process
double NowSeconds();  // monotonic

}  // namespace specula
