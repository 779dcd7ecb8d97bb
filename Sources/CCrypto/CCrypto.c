#include "CCrypto.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

int shadowbridge_sha1(const uint8_t *data, size_t length, uint8_t digest[20]) {
    unsigned int out = 0;
    return EVP_Digest(data, length, digest, &out, EVP_sha1(), NULL) == 1 && out == 20;
}

int shadowbridge_sha256(const uint8_t *data, size_t length, uint8_t digest[32]) {
    unsigned int out = 0;
    return EVP_Digest(data, length, digest, &out, EVP_sha256(), NULL) == 1 && out == 32;
}

int shadowbridge_hmac_sha256(const uint8_t *key, size_t key_length,
                             const uint8_t *data, size_t length, uint8_t mac[32]) {
    unsigned int out = 0;
    return HMAC(EVP_sha256(), key, (int)key_length, data, length, mac, &out) != NULL && out == 32;
}

// Small requests come from a per-thread pool refilled 4 KiB at a time. RAND_bytes costs about
// as much for the 12 bytes of a stanza id as for a few hundred (a DRBG call under locks), and
// the relay path makes one or two ids per line. Bytes given out are wiped from the pool; a
// forked child starts with an empty pool, so it never repeats its parent's bytes.
enum { pool_size = 4096, pooled_request_limit = 256 };
static _Thread_local uint8_t pool[pool_size];
static _Thread_local size_t pool_left = 0;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forget(void) { pool_left = 0; }
static void pool_register(void) { pthread_atfork(NULL, NULL, pool_forget); }

int shadowbridge_random_bytes(uint8_t *buffer, size_t length) {
    if (length > pooled_request_limit) return RAND_bytes(buffer, (int)length) == 1;
    pthread_once(&pool_once, pool_register);
    if (pool_left < length) {
        if (RAND_bytes(pool, pool_size) != 1) return 0;
        pool_left = pool_size;
    }
    uint8_t *start = pool + (pool_size - pool_left);
    memcpy(buffer, start, length);
    memset(start, 0, length);
    pool_left -= length;
    return 1;
}
