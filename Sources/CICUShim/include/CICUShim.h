#ifndef SHADOWBRIDGE_CICUSHIM_H
#define SHADOWBRIDGE_CICUSHIM_H
// An ICU-free surface over ICU's StringPrep (RFC 3454 profiles of RFC 3920/3491). Swift never
// sees an ICU header: Foundation carries its own private ICU, and the two clash.
#include <stdint.h>

enum shadowbridge_stringprep_profile {
    SHADOWBRIDGE_NODEPREP = 0,
    SHADOWBRIDGE_RESOURCEPREP = 1,
    SHADOWBRIDGE_NAMEPREP = 2,
};

/// Prepares `input` (UTF-8, `length` bytes) with `profile` into `output` (UTF-8).
/// Returns the output length in bytes; -1 when the string is prohibited by the profile
/// (or not valid UTF-8); -2 when `capacity` is too small.
int32_t shadowbridge_stringprep(int profile, int allow_unassigned, const char *input, int32_t length,
                                char *output, int32_t capacity);

/// Transliterates `input` (UTF-8) to ASCII with ICU's "Any-Latin; Latin-ASCII" (`Jürgen` ->
/// `Jurgen`, `Дмитрий` -> `Dmitrij`) into `output`. Returns the output length in bytes; -1 when
/// the input is not valid UTF-8 or ICU has no such transliterator; -2 when it does not fit.
int32_t shadowbridge_transliterate_ascii(const char *input, int32_t length, char *output, int32_t capacity);
#endif
