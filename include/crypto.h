/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_CRYPTO_H
#define PBSLM_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The program's only door to OpenSSL's libcrypto (the TLS pinning
 * callback in fetch.c aside).  Thread-safe; no global state.  Functions
 * return 0 or -errno; -EBADMSG means "authentication failed".
 */

#define CRYPTO_SHA256_LEN 32

void crypto_sha256(const void *data, size_t len, uint8_t out[32]);
/* SHA-256(a || b) without building the concatenation. */
void crypto_sha256_2(const void *a, size_t alen, const void *b, size_t blen,
		     uint8_t out[32]);
int crypto_hmac_sha256(const void *key, size_t keylen, const void *data,
		       size_t len, uint8_t out[32]);
/* Constant-time comparison. */
bool crypto_equal(const void *a, const void *b, size_t len);

/*
 * AES-256-GCM with a 16-byte IV (not the usual 12: PBS sets IVLEN to 16)
 * and empty AAD.  @out has room for @len bytes.  decrypt checks the tag
 * before it returns 0; on -EBADMSG @out holds nothing usable and is wiped.
 */
int crypto_gcm_encrypt(const uint8_t key[32], const uint8_t iv[16],
		       const void *in, size_t len, void *out,
		       uint8_t tag[16]);
int crypto_gcm_decrypt(const uint8_t key[32], const uint8_t iv[16],
		       const void *in, size_t len, const uint8_t tag[16],
		       void *out);

int crypto_pbkdf2_sha256(const void *pass, size_t passlen, const void *salt,
			 size_t saltlen, unsigned int iter, void *out,
			 size_t outlen);
int crypto_scrypt(const void *pass, size_t passlen, const void *salt,
		  size_t saltlen, uint64_t n, uint64_t r, uint64_t p, void *out,
		  size_t outlen);

int crypto_random(void *out, size_t len);

/*
 * Standard base64 (RFC 4648), with or without '=' padding on input.
 * decode: -EINVAL for bad input or more than @cap bytes; *@outlen set.
 * encode: @out holds 4 * ceil(len / 3) + 1 bytes.
 */
int crypto_base64_decode(const char *in, uint8_t *out, size_t cap,
			 size_t *outlen);
void crypto_base64_encode(const uint8_t *in, size_t len, char *out);
/* Wipe memory so that the compiler cannot elide it. */
void crypto_wipe(void *p, size_t len);

/*
 * Memory for key material and credentials: pages of its own, zeroed,
 * left out of core dumps (MADV_DONTDUMP) and locked with mlock where
 * permitted (a failure is only logged once); wiped, unlocked and
 * unmapped by crypto_secure_free() with the same @len.
 */
void *crypto_secure_alloc(size_t len);
void crypto_secure_free(void *p, size_t len);

#endif
