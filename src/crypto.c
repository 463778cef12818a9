/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thin wrappers over OpenSSL's libcrypto (EVP), so that the rest of the
 * program names no EVP_ function.  No state: every call builds and frees
 * its own context, which costs little next to a 4 MiB chunk.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "log.h"
#include "banned.h"

void crypto_sha256(const void *data, size_t len, uint8_t out[32])
{
	/* EVP_Digest cannot fail for SHA-256 short of memory corruption. */
	if (!EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL))
		abort();
}

void crypto_sha256_2(const void *a, size_t alen, const void *b, size_t blen,
		     uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, a, alen) ||
	    !EVP_DigestUpdate(ctx, b, blen) ||
	    !EVP_DigestFinal_ex(ctx, out, NULL))
		abort();
	EVP_MD_CTX_free(ctx);
}

int crypto_hmac_sha256(const void *key, size_t keylen, const void *data,
		       size_t len, uint8_t out[32])
{
	unsigned int outlen = 32;

	if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen))
		return -EIO;
	return 0;
}

bool crypto_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

static int gcm_init(EVP_CIPHER_CTX **pctx, bool enc, const uint8_t key[32],
		    const uint8_t iv[16])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (!ctx)
		return -ENOMEM;
	/* PBS uses a 16-byte IV: set IVLEN before the key and IV. */
	if (!EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) ||
	    !EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc)) {
		EVP_CIPHER_CTX_free(ctx);
		return -EIO;
	}
	*pctx = ctx;
	return 0;
}

/* EVP lengths are int: feed large buffers in slices. */
static int gcm_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len,
		      uint8_t *out)
{
	while (len) {
		int n = len > (1u << 30) ? 1 << 30 : (int)len;
		int outl;

		if (!EVP_CipherUpdate(ctx, out, &outl, in, n) || outl != n)
			return -EIO;
		in += n;
		out += n;
		len -= n;
	}
	return 0;
}

int crypto_gcm_encrypt(const uint8_t key[32], const uint8_t iv[16],
		       const void *in, size_t len, void *out, uint8_t tag[16])
{
	EVP_CIPHER_CTX *ctx;
	uint8_t fin[16];
	int outl;
	int ret;

	ret = gcm_init(&ctx, true, key, iv);
	if (ret)
		return ret;
	ret = gcm_update(ctx, in, len, out);
	if (!ret && (!EVP_CipherFinal_ex(ctx, fin, &outl) ||
		     !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag)))
		ret = -EIO;
	EVP_CIPHER_CTX_free(ctx);
	return ret;
}

int crypto_gcm_decrypt(const uint8_t key[32], const uint8_t iv[16],
		       const void *in, size_t len, const uint8_t tag[16],
		       void *out)
{
	EVP_CIPHER_CTX *ctx;
	uint8_t fin[16];
	int outl;
	int ret;

	ret = gcm_init(&ctx, false, key, iv);
	if (ret)
		return ret;
	ret = gcm_update(ctx, in, len, out);
	if (!ret && !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16,
					 (void *)tag))
		ret = -EIO;
	/* Final is where the tag is checked. */
	if (!ret && EVP_CipherFinal_ex(ctx, fin, &outl) <= 0)
		ret = -EBADMSG;
	EVP_CIPHER_CTX_free(ctx);
	if (ret)
		crypto_wipe(out, len);
	return ret;
}

int crypto_pbkdf2_sha256(const void *pass, size_t passlen, const void *salt,
			 size_t saltlen, unsigned int iter, void *out,
			 size_t outlen)
{
	if (passlen > INT32_MAX || saltlen > INT32_MAX || iter > INT32_MAX ||
	    outlen > INT32_MAX)
		return -EINVAL;
	if (!PKCS5_PBKDF2_HMAC(pass, (int)passlen, salt, (int)saltlen,
			       (int)iter, EVP_sha256(), (int)outlen, out))
		return -EIO;
	return 0;
}

int crypto_scrypt(const void *pass, size_t passlen, const void *salt,
		  size_t saltlen, uint64_t n, uint64_t r, uint64_t p, void *out,
		  size_t outlen)
{
	/* 128 * r * n * p plus slack; PBS itself allows 1025 MiB. */
	uint64_t maxmem = 1025ull << 20;

	if (!EVP_PBE_scrypt(pass, passlen, salt, saltlen, n, r, p, maxmem,
			    out, outlen))
		return -EINVAL;
	return 0;
}

int crypto_random(void *out, size_t len)
{
	if (len > INT32_MAX || RAND_bytes(out, (int)len) != 1)
		return -EIO;
	return 0;
}

int crypto_base64_decode(const char *in, uint8_t *out, size_t cap,
			 size_t *outlen)
{
	size_t len = strlen(in);
	size_t pad;
	uint8_t *dec;
	char *tmp;
	int n;

	while (len && in[len - 1] == '=')
		len--;
	if (len % 4 == 1 || len > 4 * (cap / 3 + 2))
		return -EINVAL;
	/* EVP_DecodeBlock wants padding: add what the writer left off. */
	pad = (4 - len % 4) % 4;
	tmp = calloc(1, len + pad + 1);
	dec = malloc((len + pad) / 4 * 3 + 1);
	if (!tmp || !dec) {
		free(tmp);
		free(dec);
		return -ENOMEM;
	}
	memcpy(tmp, in, len);
	memset(tmp + len, '=', pad);
	n = EVP_DecodeBlock(dec, (const unsigned char *)tmp, (int)(len + pad));
	free(tmp);
	if (n < 0 || (size_t)n < pad || (size_t)n - pad > cap) {
		free(dec);
		return -EINVAL;
	}
	*outlen = n - pad;
	memcpy(out, dec, *outlen);
	OPENSSL_cleanse(dec, n);
	free(dec);
	return 0;
}

void crypto_base64_encode(const uint8_t *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

void crypto_wipe(void *p, size_t len)
{
	if (p)
		OPENSSL_cleanse(p, len);
}

/* Whole pages of their own: locked, and left out of core dumps. */
static size_t secure_len(size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (len + pg - 1) / pg * pg;
}

void *crypto_secure_alloc(size_t len)
{
	static bool warned;	/* racy on purpose: at worst two warnings */
	size_t n = secure_len(len ? len : 1);
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, n, MADV_DONTDUMP);
	if (mlock(p, n) < 0 && !warned) {
		warned = true;
		log_warn("crypto: cannot lock key memory: %s", strerror(errno));
	}
	return p;
}

void crypto_secure_free(void *p, size_t len)
{
	size_t n = secure_len(len ? len : 1);

	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	munlock(p, n);
	munmap(p, n);
}
