#ifndef SHADOWBRIDGE_CCRYPTO_H
#define SHADOWBRIDGE_CCRYPTO_H
// A C-only surface over the system libcrypto: Swift never sees an OpenSSL type.
#include <stddef.h>
#include <stdint.h>

/// SHA-1 of `length` bytes into `digest` (20 bytes). Returns 1 on success.
int shadowbridge_sha1(const uint8_t *data, size_t length, uint8_t digest[20]);

/// SHA-256 of `length` bytes into `digest` (32 bytes). Returns 1 on success.
int shadowbridge_sha256(const uint8_t *data, size_t length, uint8_t digest[32]);

/// HMAC-SHA256 into `mac` (32 bytes). Returns 1 on success.
int shadowbridge_hmac_sha256(const uint8_t *key, size_t key_length,
                             const uint8_t *data, size_t length, uint8_t mac[32]);

/// Cryptographically secure random bytes. Returns 1 on success.
int shadowbridge_random_bytes(uint8_t *buffer, size_t length);
#endif
