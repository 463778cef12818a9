/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_CHUNK_H
#define PBSLM_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "key.h"

/*
 * Data blobs (FORMATS.md section 2): chunks and *.blob files.  Decoding
 * checks, in this order: length and magic, CRC32, crypt mode, GCM tag,
 * zstd, decoded length, digest.  Nothing unverified is ever left in an
 * output buffer on failure.  Thread-safe; zstd contexts are per call.
 *
 * On failure *@why (when not NULL) points to a static string naming the
 * check that failed ("CRC mismatch", "digest mismatch", ...).
 * Errors: -EBADMSG corrupt or tampered data, -ENOKEY an encrypted blob
 * and no key ("encrypted backup: key needed"), -EPROTO crypt mode does
 * not match the index.
 */

enum chunk_kind {
	CHUNK_PLAIN,
	CHUNK_ZSTD,
	CHUNK_ENC,
	CHUNK_ENC_ZSTD,
};

/* Header sizes: 12 plain, 44 encrypted. */
#define CHUNK_HDR_PLAIN 12
#define CHUNK_HDR_ENC 44

int chunk_kind(const uint8_t *blob, size_t len, enum chunk_kind *out,
	       const char **why);
bool chunk_kind_is_encrypted(enum chunk_kind k);

/*
 * SHA-256(data) without a key, SHA-256(data || id_key) with one.
 */
void chunk_digest(const void *data, size_t len, const struct key_material *k,
		  uint8_t out[32]);

/*
 * Decode and verify one index chunk into @out, which holds exactly
 * @expect_len bytes.  @k non-NULL means the index is "encrypt" mode and
 * the blob must be encrypted; NULL means it must not be.
 */
int chunk_decode_verify(const uint8_t *blob, size_t len,
			const struct key_material *k,
			const uint8_t digest[32], uint8_t *out,
			size_t expect_len, const char **why);

/*
 * Decode a *.blob file of unknown size, at most @max bytes decoded;
 * *@out is malloc'ed with a NUL after *@outlen.  @k may be NULL; an
 * encrypted blob then gives -ENOKEY.
 */
int chunk_decode_blob(const uint8_t *blob, size_t len,
		      const struct key_material *k, size_t max, uint8_t **out,
		      size_t *outlen, const char **why);

/*
 * Encode @len bytes as a blob: zstd level 1 when @compress and the
 * result is no larger than the input, AES-256-GCM with a random IV when
 * @k.  *@out is malloc'ed.
 */
int chunk_encode(const void *data, size_t len, bool compress,
		 const struct key_material *k, uint8_t **out, size_t *outlen);
/* The same with a given 16-byte IV (NULL: random): for test vectors. */
int chunk_encode_iv(const void *data, size_t len, bool compress,
		    const struct key_material *k, const uint8_t *iv,
		    uint8_t **out, size_t *outlen);

#endif
