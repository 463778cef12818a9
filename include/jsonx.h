/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_JSONX_H
#define PBSLM_JSONX_H

#include <stddef.h>

#include <json-c/json.h>

/*
 * What the JSON readers share (json-c does the parsing): a document of
 * a known length, and a string member.  Untrusted input.
 */

/*
 * @len bytes of @text (not NUL-terminated necessarily) as one JSON
 * value, nothing but white space after it: the value (json_object_put
 * it), or NULL with the offset where it went wrong in *@bad_at.
 */
json_object *jsonx_parse(const char *text, size_t len, size_t *bad_at);
/* Member @key of object @o if it is a string; else NULL (also for a
 * NULL @o). */
const char *jsonx_str(json_object *o, const char *key);

#endif
