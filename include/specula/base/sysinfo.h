// Facts about the machine and the process, for benchmarks.
#pragma once

#include <cstddef>

namespace specula {

double PeakRssMB();   // high-water resident set size of this process
double NowSeconds();  // monotonic
// Bytes the C heap has handed out and not taken back (all arenas, incl. mmapped chunks), or -1
// where the C library cannot say. Unlike the resident set, this does not move with arena growth
// or fragmentation, so a server can show (and a soak test check) that requests leave nothing.
double HeapBytesInUse();

}  // namespace specula
