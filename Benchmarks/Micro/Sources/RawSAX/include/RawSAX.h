#ifndef RAWSAX_H
#define RAWSAX_H
#include <stddef.h>

/// What the counting SAX callbacks saw; the benchmark checks both parsers saw the same stream.
typedef struct {
    size_t elements;
    size_t attributes;
    size_t textBytes;
    int error;
} RawSAXCounts;

/// Parses `length` bytes with libxml2's push parser, fed `chunk` bytes at a time, with SAX2
/// callbacks that only count what they are given. This is the ceiling for any parser built on
/// libxml2: everything above it is the cost of turning SAX events into values.
RawSAXCounts rawsax_parse(const char *bytes, size_t length, size_t chunk);

#endif
