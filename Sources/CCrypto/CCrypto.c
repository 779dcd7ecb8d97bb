#include "CCrypto.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

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

int shadowbridge_random_bytes(uint8_t *buffer, size_t length) {
    return RAND_bytes(buffer, (int)length) == 1;
}
