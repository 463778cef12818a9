/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <ctype.h>
#include <stdint.h>

#include "jsonx.h"
#include "banned.h"

json_object *jsonx_parse(const char *text, size_t len, size_t *bad_at)
{
	struct json_tokener *tok;
	json_object *root = NULL;
	size_t off = 0;

	*bad_at = 0;
	if (len > INT32_MAX)
		return NULL;
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (root && json_tokener_get_error(tok) == json_tokener_success) {
		off = (size_t)tok->char_offset;
		while (off < len && isspace((unsigned char)text[off]))
			off++;
	}
	if (!root || off != len) {
		*bad_at = (size_t)tok->char_offset;
		json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	return root;
}

const char *jsonx_str(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}
