/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PBS-style certificate pinning on an OpenSSL SSL_CTX.
 *
 * OpenSSL calls the verify callback for every certificate of the chain,
 * the leaf (depth 0) last, and once more for each error it finds.  A
 * failure above the leaf is let through but remembered in the
 * X509_STORE_CTX (ex data), so that at the leaf "the chain verified" is
 * known.  The leaf is then accepted if the chain verified and its names
 * match the host (X509_check_host / X509_check_ip_asc: what curl's own
 * check would have done), or if its SHA-256 equals the pin; either way
 * the store's error is reset to X509_V_OK so that the TLS layer's final
 * verdict agrees.
 *
 * Locking: ->lock guards ->refused; everything else is immutable.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "util.h"
#include "banned.h"

struct tls_pin {
	uint8_t sha256[32];	/* immutable */
	char *str;		/* immutable */
	char *host;		/* immutable */
	pthread_mutex_t lock;
	char refused[96];	/* protected by ->lock */
};

static int ctx_idx = -1;	/* SSL_CTX ex data: our tls_pin */
static int store_idx = -1;	/* X509_STORE_CTX ex data: chain failed */
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void idx_init(void)
{
	ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	store_idx = X509_STORE_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int tls_pin_new(const char *fingerprint, const char *host,
		struct tls_pin **out)
{
	struct tls_pin *p = xcalloc(1, sizeof(*p));

	if (fingerprint_decode(fingerprint, p->sha256)) {
		free(p);
		return -EINVAL;
	}
	pthread_once(&idx_once, idx_init);
	p->str = xstrdup(fingerprint);
	p->host = xstrdup(host ? host : "");
	pthread_mutex_init(&p->lock, NULL);
	*out = p;
	return 0;
}

void tls_pin_free(struct tls_pin *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p->str);
	free(p->host);
	free(p);
}

const char *tls_pin_str(const struct tls_pin *p)
{
	return p->str;
}

void tls_pin_last_refused(struct tls_pin *p, char *out, size_t len)
{
	pthread_mutex_lock(&p->lock);
	snprintf(out, len, "%s", p->refused);
	pthread_mutex_unlock(&p->lock);
}

static bool names_match(X509 *cert, const char *host)
{
	if (!*host)
		return false;
	if (X509_check_ip_asc(cert, host, 0) == 1)
		return true;
	return X509_check_host(cert, host, 0, 0, NULL) == 1;
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
		x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_pin *p = ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
						      ctx_idx) : NULL;
	X509 *cert = X509_STORE_CTX_get_current_cert(x);
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char got[96] = "";

	if (!p)
		return ok;
	if (X509_STORE_CTX_get_error_depth(x) > 0) {
		if (!ok)
			X509_STORE_CTX_set_ex_data(x, store_idx, p);
		return 1;
	}
	if (!cert)
		return 0;
	if (ok && !X509_STORE_CTX_get_ex_data(x, store_idx) &&
	    names_match(cert, p->host))
		return 1;
	if (X509_digest(cert, EVP_sha256(), md, &mdlen) && mdlen == 32 &&
	    !memcmp(md, p->sha256, 32)) {
		X509_STORE_CTX_set_error(x, X509_V_OK);
		return 1;
	}
	fingerprint_encode(md, mdlen == 32 ? 32 : 0, got);
	pthread_mutex_lock(&p->lock);
	snprintf(p->refused, sizeof(p->refused), "%s", got);
	pthread_mutex_unlock(&p->lock);
	if (ok)
		X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
	return 0;
}

void tls_pin_install(struct tls_pin *p, void *ssl_ctx)
{
	SSL_CTX *ctx = ssl_ctx;

	SSL_CTX_set_ex_data(ctx, ctx_idx, p);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
}
