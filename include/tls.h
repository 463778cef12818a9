/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_TLS_H
#define PBSLM_TLS_H

#include <stddef.h>

/*
 * Server certificate checks as PBS does them (PBS-PROTOCOL.md 1.1,
 * FORMATS.md 8.4).  Without a pin the transport's normal verification
 * (chain and host name) applies and this module is not involved.  With
 * a pin, a certificate accepted by that normal verification is accepted,
 * and otherwise the leaf whose DER SHA-256 equals the pin; intermediate
 * certificates are then let through unjudged.  OpenSSL only: the
 * transports (fetch, h2) install it from curl's SSL_CTX callback, with
 * curl's own host check off, since the pin may name a certificate whose
 * names do not match.
 *
 * struct tls_pin is immutable after tls_pin_new() but for the last
 * refused fingerprint (internal lock); any thread.
 */
struct tls_pin;

/* @fingerprint: "aa:bb:.." (32 bytes, colons optional, either case);
 * @host: the name or address connected to.  -EINVAL on a bad pin. */
int tls_pin_new(const char *fingerprint, const char *host,
		struct tls_pin **out);
void tls_pin_free(struct tls_pin *p);
/* Install the verify callback into an OpenSSL SSL_CTX (void *: no
 * OpenSSL types in this header). */
void tls_pin_install(struct tls_pin *p, void *ssl_ctx);
/* The fingerprint of the last certificate refused ("aa:bb:.."), or "". */
void tls_pin_last_refused(struct tls_pin *p, char *out, size_t len);
/* The pin as given. */
const char *tls_pin_str(const struct tls_pin *p);

#endif
