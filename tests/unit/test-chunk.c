/* SPDX-License-Identifier: GPL-2.0-or-later */
/* chunk: blob vectors of FORMATS.md 13.3 and every failing check. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "chunk.h"
#include "snap.h"
#include "key.h"
#include "util.h"

static struct key_material *key0(void)
{
	struct key_material *k;
	uint8_t raw[32];

	for (int i = 0; i < 32; i++)
		raw[i] = i;
	assert_int_equal(key_from_raw(raw, &k), 0);
	return k;
}

static void fix_crc(uint8_t *blob, size_t len, size_t hdr)
{
	uint32_t c = (uint32_t)crc32(0, blob + hdr, len - hdr);

	for (int i = 0; i < 4; i++)
		blob[8 + i] = (uint8_t)(c >> (8 * i));
}

static void test_plain_hello(void **state)
{
	static const char want[] = "42ab3807be8370a186a6103668656c6c6f";
	uint8_t digest[32];
	uint8_t out[5];
	uint8_t *blob;
	size_t len;
	char hex[64];
	const char *why = NULL;

	(void)state;
	assert_int_equal(chunk_encode("hello", 5, false, NULL, &blob, &len), 0);
	assert_int_equal(len, 17);
	hex_encode(blob, len, hex);
	assert_string_equal(hex, want);
	chunk_digest("hello", 5, NULL, digest);
	assert_int_equal(chunk_decode_verify(blob, len, NULL, digest, out, 5,
					     &why), 0);
	assert_memory_equal(out, "hello", 5);
	/* Wrong CRC */
	blob[8] ^= 1;
	assert_int_equal(chunk_decode_verify(blob, len, NULL, digest, out, 5,
					     &why), -EBADMSG);
	assert_string_equal(why, "CRC mismatch");
	blob[8] ^= 1;
	/* Digest mismatch */
	digest[0] ^= 1;
	assert_int_equal(chunk_decode_verify(blob, len, NULL, digest, out, 5,
					     &why), -EBADMSG);
	assert_string_equal(why, "digest mismatch");
	assert_memory_equal(out, "\0\0\0\0\0", 5);
	digest[0] ^= 1;
	/* Length mismatch, truncated, unknown magic */
	assert_int_equal(chunk_decode_verify(blob, len, NULL, digest, out, 4,
					     &why), -EBADMSG);
	assert_int_equal(chunk_decode_verify(blob, 11, NULL, digest, out, 5,
					     &why), -EBADMSG);
	assert_string_equal(why, "blob too short");
	blob[0] ^= 1;
	assert_int_equal(chunk_decode_verify(blob, len, NULL, digest, out, 5,
					     &why), -EBADMSG);
	assert_string_equal(why, "unknown blob magic");
	free(blob);
}

static void test_encrypted_hello(void **state)
{
	static const char want[] =
		"7b6785be222d4cf0f6f063b811111111111111111111111111111111"
		"43eafcfc90bf4dda5b857dd0d1621c9c2879b16d1f";
	struct key_material *k = key0();
	uint8_t iv[16];
	uint8_t digest[32];
	uint8_t out[5];
	uint8_t *blob;
	size_t len;
	char hex[200];
	const char *why = NULL;

	(void)state;
	memset(iv, 0x11, sizeof(iv));
	assert_int_equal(chunk_encode_iv("hello", 5, false, k, iv, &blob, &len),
			 0);
	hex_encode(blob, len, hex);
	assert_string_equal(hex, want);
	chunk_digest("hello", 5, k, digest);
	hex_encode(digest, 32, hex);
	assert_string_equal(hex, "e34178a27b992c4a218599bf7f43ed50"
				 "bc464a03d624d9092306fe2ed74d557e");
	assert_int_equal(chunk_decode_verify(blob, len, k, digest, out, 5,
					     &why), 0);
	assert_memory_equal(out, "hello", 5);
	/* No key: refused, nothing decoded. */
	assert_int_equal(chunk_decode_verify(blob, len, NULL, digest, out, 5,
					     &why), -ENOKEY);
	assert_string_equal(why, "encrypted backup: key needed");
	/* Flipped ciphertext byte with a fixed-up CRC: the tag fails. */
	blob[44] ^= 1;
	fix_crc(blob, len, 44);
	memset(out, 'x', 5);
	assert_int_equal(chunk_decode_verify(blob, len, k, digest, out, 5,
					     &why), -EBADMSG);
	assert_non_null(strstr(why, "GCM tag"));
	assert_memory_equal(out, "\0\0\0\0\0", 5);
	blob[44] ^= 1;
	fix_crc(blob, len, 44);
	/* A changed IV (not covered by the CRC): the tag fails. */
	blob[12] ^= 1;
	assert_int_equal(chunk_decode_verify(blob, len, k, digest, out, 5,
					     &why), -EBADMSG);
	blob[12] ^= 1;
	/* Magic changed to the compressed variant: zstd or digest fails. */
	memcpy(blob, SNAP_MAGIC_BLOB_ENC_ZSTD, 8);
	assert_int_equal(chunk_decode_verify(blob, len, k, digest, out, 5,
					     &why), -EBADMSG);
	free(blob);
	/* A plain blob where the index says encrypted. */
	assert_int_equal(chunk_encode("hello", 5, false, NULL, &blob, &len), 0);
	assert_int_equal(chunk_decode_verify(blob, len, k, digest, out, 5,
					     &why), -EPROTO);
	free(blob);
	key_free(k);
}

static void roundtrip(const uint8_t *data, size_t n,
		      const struct key_material *k, enum chunk_kind want)
{
	uint8_t digest[32];
	uint8_t *out = malloc(n);
	uint8_t *blob;
	size_t len;
	enum chunk_kind kind;

	chunk_digest(data, n, k, digest);
	assert_int_equal(chunk_encode(data, n, true, k, &blob, &len), 0);
	assert_int_equal(chunk_kind(blob, len, &kind, NULL), 0);
	assert_int_equal(kind, want);
	assert_int_equal(chunk_decode_verify(blob, len, k, digest, out, n,
					     NULL), 0);
	assert_memory_equal(out, data, n);
	free(blob);
	free(out);
}

static void test_zstd(void **state)
{
	size_t n = 4 << 20;
	uint8_t *zeros = calloc(1, n);
	uint8_t *rnd = malloc(n);
	struct key_material *k = key0();
	uint8_t digest[32];
	char hex[65];

	(void)state;
	for (size_t i = 0; i < n; i++)
		rnd[i] = (uint8_t)(i * 2654435761u >> 13);
	chunk_digest(zeros, n, NULL, digest);
	hex_encode(digest, 32, hex);
	assert_string_equal(hex, "bb9f8df61474d25e71fa00722318cd38"
				 "7396ca1736605e1248821cc0de3d3af8");
	chunk_digest(zeros, n, k, digest);
	hex_encode(digest, 32, hex);
	assert_string_equal(hex, "348571e12bbbedb529def1f1394316e3"
				 "38a01945d871df9ef792617ceb13d636");
	roundtrip(zeros, n, NULL, CHUNK_ZSTD);
	roundtrip(zeros, n, k, CHUNK_ENC_ZSTD);
	/* Incompressible data is stored plain. */
	for (size_t i = 0; i < n; i++)
		rnd[i] = (uint8_t)(rand() >> 7);
	roundtrip(rnd, n, NULL, CHUNK_PLAIN);
	roundtrip(rnd, n, k, CHUNK_ENC);
	free(zeros);
	free(rnd);
	key_free(k);
}

/* A v3-style frame without a content size must decode too. */
static void test_zstd_no_content_size(void **state)
{
	size_t n = 100000;
	uint8_t *data = calloc(1, n);
	size_t cap = ZSTD_compressBound(n) + 12;
	uint8_t *blob = malloc(cap);
	uint8_t *out = malloc(n);
	uint8_t *big = NULL;
	size_t biglen;
	uint8_t digest[32];
	ZSTD_CCtx *c = ZSTD_createCCtx();
	ZSTD_inBuffer in = { data, n, 0 };
	ZSTD_outBuffer o = { blob + 12, cap - 12, 0 };

	(void)state;
	memset(data, 'a', n / 2);
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
	while (ZSTD_compressStream2(c, &o, &in, ZSTD_e_end))
		;
	ZSTD_freeCCtx(c);
	assert_int_equal(ZSTD_getFrameContentSize(blob + 12, o.pos),
			 ZSTD_CONTENTSIZE_UNKNOWN);
	memcpy(blob, SNAP_MAGIC_BLOB_ZSTD, 8);
	fix_crc(blob, 12 + o.pos, 12);
	chunk_digest(data, n, NULL, digest);
	assert_int_equal(chunk_decode_verify(blob, 12 + o.pos, NULL, digest,
					     out, n, NULL), 0);
	assert_memory_equal(out, data, n);
	/* chunk_decode_blob: streaming, capped. */
	assert_int_equal(chunk_decode_blob(blob, 12 + o.pos, NULL, n, &big,
					   &biglen, NULL), 0);
	assert_int_equal(biglen, n);
	free(big);
	assert_int_equal(chunk_decode_blob(blob, 12 + o.pos, NULL, n - 1, &big,
					   &biglen, NULL), -EBADMSG);
	/* Truncated frame. */
	fix_crc(blob, 12 + o.pos - 3, 12);
	assert_int_equal(chunk_decode_verify(blob, 12 + o.pos - 3, NULL,
					     digest, out, n, NULL), -EBADMSG);
	free(data);
	free(blob);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_hello),
		cmocka_unit_test(test_encrypted_hello),
		cmocka_unit_test(test_zstd),
		cmocka_unit_test(test_zstd_no_content_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
