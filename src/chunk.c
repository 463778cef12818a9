/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Data blobs (FORMATS.md section 2): decode with every check, encode as
 * PBS v4 does.  Each thread keeps its own zstd decompression context (a
 * pthread key frees it when the thread exits), so the hot path allocates
 * nothing for plain and compressed chunks.  Nothing unverified survives a
 * failed decode: the output buffer is zeroed before -EBADMSG returns.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "chunk.h"
#include "compiler.h"
#include "crypto.h"
#include "snap.h"
#include "banned.h"

static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p)
{
	ZSTD_freeDCtx(p);
}

static void dctx_init(void)
{
	pthread_key_create(&dctx_key, dctx_free);
}

/* This thread's context; NULL only when out of memory. */
static ZSTD_DCtx *thread_dctx(void)
{
	ZSTD_DCtx *d;

	pthread_once(&dctx_once, dctx_init);
	d = pthread_getspecific(dctx_key);
	if (!d) {
		d = ZSTD_createDCtx();
		if (d)
			pthread_setspecific(dctx_key, d);
	}
	return d;
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc32_of(const uint8_t *p, size_t len)
{
	uLong c = crc32(0, Z_NULL, 0);

	/* zlib takes uInt lengths: feed large buffers in slices. */
	while (len) {
		uInt n = len > (1u << 30) ? 1u << 30 : (uInt)len;

		c = crc32(c, p, n);
		p += n;
		len -= n;
	}
	return (uint32_t)c;
}

static void set_why(const char **why, const char *s)
{
	if (why)
		*why = s;
}

bool chunk_kind_is_encrypted(enum chunk_kind k)
{
	return k == CHUNK_ENC || k == CHUNK_ENC_ZSTD;
}

int chunk_kind(const uint8_t *blob, size_t len, enum chunk_kind *out,
	       const char **why)
{
	if (len < CHUNK_HDR_PLAIN) {
		set_why(why, "blob too short");
		return -EBADMSG;
	}
	if (!memcmp(blob, SNAP_MAGIC_BLOB_PLAIN, 8))
		*out = CHUNK_PLAIN;
	else if (!memcmp(blob, SNAP_MAGIC_BLOB_ZSTD, 8))
		*out = CHUNK_ZSTD;
	else if (!memcmp(blob, SNAP_MAGIC_BLOB_ENC, 8))
		*out = CHUNK_ENC;
	else if (!memcmp(blob, SNAP_MAGIC_BLOB_ENC_ZSTD, 8))
		*out = CHUNK_ENC_ZSTD;
	else {
		set_why(why, "unknown blob magic");
		return -EBADMSG;
	}
	if (chunk_kind_is_encrypted(*out) && len < CHUNK_HDR_ENC) {
		set_why(why, "encrypted blob too short");
		return -EBADMSG;
	}
	return 0;
}

void chunk_digest(const void *data, size_t len, const struct key_material *k,
		  uint8_t out[32])
{
	if (k)
		crypto_sha256_2(data, len, k->id_key, 32, out);
	else
		crypto_sha256(data, len, out);
}

/* Kind and CRC; the payload starts at *@hdr. */
static int check_header(const uint8_t *blob, size_t len, enum chunk_kind *k,
			size_t *hdr, const char **why)
{
	int ret = chunk_kind(blob, len, k, why);

	if (ret)
		return ret;
	*hdr = chunk_kind_is_encrypted(*k) ? CHUNK_HDR_ENC : CHUNK_HDR_PLAIN;
	/*
	 * A fuzzer cannot forge CRCs; a hostile server can.  So fuzz
	 * builds go past this check, into what a forged CRC reaches.
	 */
	if (crc32_of(blob + *hdr, len - *hdr) != le32(blob + 8) &&
	    !FUZZING) {
		set_why(why, "CRC mismatch");
		return -EBADMSG;
	}
	return 0;
}

/* zstd frames (with or without content size) into exactly @cap bytes. */
static int unzstd(const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
		  const char **why)
{
	ZSTD_DCtx *d = thread_dctx();
	size_t n;

	if (!d)
		return -ENOMEM;
	n = ZSTD_decompressDCtx(d, dst, cap, src, len);
	if (ZSTD_isError(n)) {
		set_why(why, ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ?
			"decoded length larger than expected" :
			"zstd data corrupt");
		return -EBADMSG;
	}
	if (n != cap) {
		set_why(why, "decoded length shorter than expected");
		return -EBADMSG;
	}
	return 0;
}

/* The header of @blob checked, a key at hand if it is encrypted: its
 * kind and payload. */
static int open_blob(const uint8_t *blob, size_t len,
		     const struct key_material *k, enum chunk_kind *kind,
		     const uint8_t **payload, size_t *plen, const char **why)
{
	size_t hdr;
	int ret = check_header(blob, len, kind, &hdr, why);

	if (ret)
		return ret;
	if (chunk_kind_is_encrypted(*kind) && !k) {
		set_why(why, "encrypted backup: key needed");
		return -ENOKEY;
	}
	*payload = blob + hdr;
	*plen = len - hdr;
	return 0;
}

int chunk_decode_verify(const uint8_t *blob, size_t len,
			const struct key_material *k,
			const uint8_t digest[32], uint8_t *out,
			size_t expect_len, const char **why)
{
	const uint8_t *payload;
	uint8_t *plain = NULL;
	uint8_t d[32];
	enum chunk_kind kind;
	size_t plen;
	int ret;

	ret = open_blob(blob, len, k, &kind, &payload, &plen, why);
	if (ret)
		goto out;
	if (!chunk_kind_is_encrypted(kind) && k) {
		set_why(why, "crypt mode does not match the index");
		ret = -EPROTO;
		goto out;
	}
	switch (kind) {
	case CHUNK_PLAIN:
		if (plen != expect_len) {
			set_why(why, "decoded length differs from the index");
			ret = -EBADMSG;
			break;
		}
		memcpy(out, payload, plen);
		break;
	case CHUNK_ZSTD:
		ret = unzstd(payload, plen, out, expect_len, why);
		break;
	case CHUNK_ENC:
		if (plen != expect_len) {
			set_why(why, "decoded length differs from the index");
			ret = -EBADMSG;
			break;
		}
		ret = crypto_gcm_decrypt(k->enc_key, blob + 12, payload, plen,
					 blob + 28, out);
		if (ret == -EBADMSG)
			set_why(why, "GCM tag mismatch (wrong key or tampered)");
		break;
	case CHUNK_ENC_ZSTD:
		plain = malloc(plen ? plen : 1);
		if (!plain) {
			ret = -ENOMEM;
			break;
		}
		ret = crypto_gcm_decrypt(k->enc_key, blob + 12, payload, plen,
					 blob + 28, plain);
		if (ret == -EBADMSG)
			set_why(why, "GCM tag mismatch (wrong key or tampered)");
		if (!ret)
			ret = unzstd(plain, plen, out, expect_len, why);
		crypto_wipe(plain, plen);
		free(plain);
		break;
	}
	if (!ret) {
		chunk_digest(out, expect_len, k, d);
		if (!crypto_equal(d, digest, 32)) {
			set_why(why, "digest mismatch");
			ret = -EBADMSG;
		}
	}
out:
	/* Nothing of a chunk that failed is left for anyone to read. */
	if (ret)
		memset(out, 0, expect_len);
	return ret;
}

/* Streaming decode for blobs of unknown size, capped at @max. */
static int unzstd_alloc(const uint8_t *src, size_t len, size_t max,
			uint8_t **out, size_t *outlen, const char **why)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	ZSTD_inBuffer in = { src, len, 0 };
	size_t cap = 64 * 1024;
	uint8_t *buf = malloc(cap + 1);
	size_t used = 0;
	size_t r = 1;
	int ret = 0;

	if (!ds || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (in.pos < in.size || r) {
		ZSTD_outBuffer o;

		if (used == cap) {
			uint8_t *nb;

			if (cap >= max) {
				set_why(why, "decoded blob too large");
				ret = -EBADMSG;
				goto out;
			}
			cap = MIN(cap * 2, max);
			nb = realloc(buf, cap + 1);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		o.dst = buf + used;
		o.size = cap - used;
		o.pos = 0;
		r = ZSTD_decompressStream(ds, &o, &in);
		if (ZSTD_isError(r)) {
			set_why(why, "zstd data corrupt");
			ret = -EBADMSG;
			goto out;
		}
		used += o.pos;
		if (in.pos == in.size && o.pos == 0 && r) {
			set_why(why, "zstd data truncated");
			ret = -EBADMSG;
			goto out;
		}
	}
	buf[used] = '\0';
	*out = buf;
	*outlen = used;
	buf = NULL;
out:
	free(buf);
	ZSTD_freeDStream(ds);
	return ret;
}

int chunk_decode_blob(const uint8_t *blob, size_t len,
		      const struct key_material *k, size_t max, uint8_t **out,
		      size_t *outlen, const char **why)
{
	const uint8_t *payload;
	uint8_t *plain = NULL;
	enum chunk_kind kind;
	size_t plen;
	int ret;

	ret = open_blob(blob, len, k, &kind, &payload, &plen, why);
	if (ret)
		return ret;
	if (chunk_kind_is_encrypted(kind)) {
		plain = malloc(plen + 1);
		if (!plain)
			return -ENOMEM;
		ret = crypto_gcm_decrypt(k->enc_key, blob + 12, payload, plen,
					 blob + 28, plain);
		if (ret) {
			set_why(why, "GCM tag mismatch (wrong key or tampered)");
			free(plain);
			return ret;
		}
		payload = plain;
	}
	if (kind == CHUNK_ZSTD || kind == CHUNK_ENC_ZSTD) {
		ret = unzstd_alloc(payload, plen, max, out, outlen, why);
	} else if (plen > max) {
		set_why(why, "decoded blob too large");
		ret = -EBADMSG;
	} else {
		*out = malloc(plen + 1);
		if (!*out) {
			ret = -ENOMEM;
		} else {
			memcpy(*out, payload, plen);
			(*out)[plen] = '\0';
			*outlen = plen;
		}
	}
	if (plain) {
		crypto_wipe(plain, plen);
		free(plain);
	}
	return ret;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

int chunk_encode_iv(const void *data, size_t len, bool compress,
		    const struct key_material *k, const uint8_t *iv,
		    uint8_t **out, size_t *outlen)
{
	size_t hdr = k ? CHUNK_HDR_ENC : CHUNK_HDR_PLAIN;
	const uint8_t *payload = data;
	uint8_t *zbuf = NULL;
	size_t plen = len;
	uint8_t *blob;
	bool zipped = false;
	int ret = 0;

	if (compress && len) {
		size_t bound = ZSTD_compressBound(len);
		size_t n;

		zbuf = malloc(bound);
		if (!zbuf)
			return -ENOMEM;
		n = ZSTD_compress(zbuf, bound, data, len, 1);
		/* v4 rule: keep it only when it is no larger. */
		if (!ZSTD_isError(n) && n <= len) {
			payload = zbuf;
			plen = n;
			zipped = true;
		}
	}
	blob = malloc(hdr + plen);
	if (!blob) {
		ret = -ENOMEM;
		goto out;
	}
	if (k) {
		memcpy(blob, zipped ? SNAP_MAGIC_BLOB_ENC_ZSTD :
				      SNAP_MAGIC_BLOB_ENC, 8);
		if (iv)
			memcpy(blob + 12, iv, 16);
		else
			ret = crypto_random(blob + 12, 16);
		if (!ret)
			ret = crypto_gcm_encrypt(k->enc_key, blob + 12, payload,
						 plen, blob + hdr, blob + 28);
		if (ret) {
			free(blob);
			goto out;
		}
	} else {
		memcpy(blob, zipped ? SNAP_MAGIC_BLOB_ZSTD :
				      SNAP_MAGIC_BLOB_PLAIN, 8);
		memcpy(blob + hdr, payload, plen);
	}
	put_le32(blob + 8, crc32_of(blob + hdr, plen));
	*out = blob;
	*outlen = hdr + plen;
out:
	free(zbuf);
	return ret;
}

int chunk_encode(const void *data, size_t len, bool compress,
		 const struct key_material *k, uint8_t **out, size_t *outlen)
{
	return chunk_encode_iv(data, len, compress, k, NULL, out, outlen);
}
