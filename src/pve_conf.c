/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Proxmox VE guest configurations: parsed as PVE's parse_vm_config()
 * reads them (qemu-server's PVE/QemuServer.pm), keeping the main
 * section.  See pve_conf.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compiler.h"
#include "pve_conf.h"
#include "util.h"
#include "banned.h"

struct kv {
	char *key;
	char *value;
};

struct pve_conf {
	struct kv *kv;
	size_t nkv;
	char *descr;
	size_t descr_len;
	char **sections;
	size_t nsections;
	char **notes;
	size_t nnotes;
	struct pve_map *maps;
	size_t nmaps;
};

static void add_str(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

static void note(struct pve_conf *c, unsigned int line, const char *what,
		 const char *text, size_t len)
{
	add_str(&c->notes, &c->nnotes,
		xasprintf("line %u: %s: %.*s", line, what,
			  (int)MIN(len, (size_t)80), text));
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* PVE::Tools::decode_text: %XX escapes, appended with @sep. */
static void add_descr(struct pve_conf *c, const char *s, size_t len,
		      const char *sep)
{
	size_t sl = strlen(sep);

	c->descr = xrealloc(c->descr, c->descr_len + len + sl + 1);
	for (size_t i = 0; i < len; i++) {
		int hi = s[i] == '%' && i + 2 < len ? hexval(s[i + 1]) : -1;
		int lo = hi >= 0 ? hexval(s[i + 2]) : -1;

		if (lo >= 0) {
			c->descr[c->descr_len++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			c->descr[c->descr_len++] = s[i];
		}
	}
	memcpy(c->descr + c->descr_len, sep, sl);
	c->descr_len += sl;
	c->descr[c->descr_len] = '\0';
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' ||
	       ch == '\v';
}

/* "[a-z][a-z_-]*[0-9]*" */
static bool is_key(const char *s, size_t len)
{
	size_t i = 0;

	if (!len || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' ||
			   s[i] == '-'))
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	return i == len;
}

/* "[name]": its name, or NULL when the line is not a section header. */
static char *section_name(const char *s, size_t len)
{
	while (len && is_space(s[len - 1]))
		len--;
	if (len < 2 || s[0] != '[' || s[len - 1] != ']')
		return NULL;
	if (memchr(s + 1, ']', len - 2))
		return NULL;
	return strndup(s + 1, len - 2);
}

static void set_kv(struct pve_conf *c, unsigned int line, const char *k,
		   size_t klen, const char *v, size_t vlen)
{
	for (size_t i = 0; i < c->nkv; i++) {
		if (strlen(c->kv[i].key) == klen &&
		    !memcmp(c->kv[i].key, k, klen)) {
			note(c, line, "given again, the last one counts", k,
			     klen);
			free(c->kv[i].value);
			c->kv[i].value = strndup(v, vlen);
			return;
		}
	}
	c->kv = xrealloc(c->kv, (c->nkv + 1) * sizeof(*c->kv));
	/* PVE's alias: "cdrom" is ide2. */
	if (klen == 5 && !memcmp(k, "cdrom", 5))
		c->kv[c->nkv].key = xstrdup("ide2");
	else
		c->kv[c->nkv].key = strndup(k, klen);
	c->kv[c->nkv].value = strndup(v, vlen);
	c->nkv++;
}

/* "#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:" */
static void add_map(struct pve_conf *c, unsigned int line, const char *s,
		    size_t len)
{
	char *text = strndup(s, len);
	char *f[4] = { 0 };
	char *p = text;
	int n = 0;

	while (n < 4 && p) {
		char *colon = strchr(p, ':');

		if (colon)
			*colon = '\0';
		f[n++] = p;
		p = colon ? colon + 1 : NULL;
	}
	if (n < 2 || !is_key(f[0], strlen(f[0])) || !f[1][0] ||
	    strchr(f[1], '/')) {
		note(c, line, "not a disk map", s, len);
		free(text);
		return;
	}
	c->maps = xrealloc(c->maps, (c->nmaps + 1) * sizeof(*c->maps));
	c->maps[c->nmaps] = (struct pve_map){
		.virtdev = xstrdup(f[0]),
		.archive = xstrdup(f[1]),
		.storage = xstrdup(f[2] ? f[2] : ""),
		.format = xstrdup(f[3] ? f[3] : ""),
	};
	c->nmaps++;
	free(text);
}

/* One line of the main section. */
static void main_line(struct pve_conf *c, unsigned int line, const char *s,
		      size_t len)
{
	const char *colon;
	const char *v;
	size_t vlen;

	if (len > 12 && !memcmp(s, "#qmdump#map:", 12)) {
		add_map(c, line, s + 12, len - 12);
		return;
	}
	if ((len >= 8 && !memcmp(s, "#qmdump#", 8)) ||
	    (len >= 8 && !memcmp(s, "#vzdump#", 8)))
		return;
	if (s[0] == '#') {
		add_descr(c, s + 1, len - 1, "\n");
		return;
	}
	colon = memchr(s, ':', len);
	if (!colon || !is_key(s, colon - s)) {
		note(c, line, "not understood", s, len);
		return;
	}
	v = colon + 1;
	vlen = len - (v - s);
	while (vlen && is_space(*v)) {
		v++;
		vlen--;
	}
	while (vlen && is_space(v[vlen - 1]))
		vlen--;
	if (!vlen) {
		note(c, line, "no value", s, len);
		return;
	}
	if (colon - s == 11 && !memcmp(s, "description", 11))
		add_descr(c, v, vlen, "");
	else
		set_kv(c, line, s, colon - s, v, vlen);
}

int pve_conf_parse(const char *text, size_t len, struct pve_conf **out,
		   char *err, size_t errlen)
{
	struct pve_conf *c = xcalloc(1, sizeof(*c));
	bool in_main = true;
	unsigned int line = 0;
	size_t pos = 0;

	if (memchr(text, '\0', len)) {
		size_t at = (const char *)memchr(text, '\0', len) - text;
		unsigned int l = 1;

		for (size_t i = 0; i < at; i++)
			l += text[i] == '\n';
		if (err)
			snprintf(err, errlen, "line %u: a NUL byte: not a "
				 "configuration", l);
		pve_conf_free(c);
		return -EBADMSG;
	}
	while (pos < len) {
		const char *s = text + pos;
		const char *nl = memchr(s, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - s) : len - pos;
		char *name;
		size_t t = l;

		pos += l + (nl ? 1 : 0);
		line++;
		while (t && is_space(s[t - 1]))
			t--;
		if (!t)
			continue;	/* blank */
		name = section_name(s, t);
		if (name) {
			/* PENDING, special:NAME, a snapshot, or unknown: all
			 * other states of the guest than the current one. */
			add_str(&c->sections, &c->nsections, name);
			in_main = false;
			continue;
		}
		if (in_main)
			main_line(c, line, s, t);
	}
	/* PVE trims the description's trailing white space. */
	while (c->descr_len && isspace((unsigned char)c->descr[c->descr_len - 1]))
		c->descr[--c->descr_len] = '\0';
	*out = c;
	return 0;
}

void pve_conf_free(struct pve_conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nkv; i++) {
		free(c->kv[i].key);
		free(c->kv[i].value);
	}
	for (size_t i = 0; i < c->nsections; i++)
		free(c->sections[i]);
	for (size_t i = 0; i < c->nnotes; i++)
		free(c->notes[i]);
	for (size_t i = 0; i < c->nmaps; i++) {
		free((char *)c->maps[i].virtdev);
		free((char *)c->maps[i].archive);
		free((char *)c->maps[i].storage);
		free((char *)c->maps[i].format);
	}
	free(c->kv);
	free(c->sections);
	free(c->notes);
	free(c->maps);
	free(c->descr);
	free(c);
}

size_t pve_conf_count(const struct pve_conf *c)
{
	return c->nkv;
}

const char *pve_conf_key(const struct pve_conf *c, size_t i)
{
	return c->kv[i].key;
}

const char *pve_conf_value(const struct pve_conf *c, size_t i)
{
	return c->kv[i].value;
}

const char *pve_conf_get(const struct pve_conf *c, const char *key)
{
	for (size_t i = 0; i < c->nkv; i++)
		if (!strcmp(c->kv[i].key, key))
			return c->kv[i].value;
	return NULL;
}

const char *pve_conf_description(const struct pve_conf *c)
{
	return c->descr_len ? c->descr : NULL;
}

size_t pve_conf_nsections(const struct pve_conf *c)
{
	return c->nsections;
}

const char *pve_conf_section(const struct pve_conf *c, size_t i)
{
	return c->sections[i];
}

size_t pve_conf_nnotes(const struct pve_conf *c)
{
	return c->nnotes;
}

const char *pve_conf_note(const struct pve_conf *c, size_t i)
{
	return c->notes[i];
}

size_t pve_conf_nmaps(const struct pve_conf *c)
{
	return c->nmaps;
}

const struct pve_map *pve_conf_map(const struct pve_conf *c, size_t i)
{
	return &c->maps[i];
}

const struct pve_map *pve_conf_find_map(const struct pve_conf *c,
					const char *virtdev)
{
	for (size_t i = 0; i < c->nmaps; i++)
		if (!strcmp(c->maps[i].virtdev, virtdev))
			return &c->maps[i];
	return NULL;
}

/* Element @i of property string @s: [*@e, *@e + *@elen). */
static bool prop_elem(const char *s, size_t i, const char **e, size_t *elen)
{
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t l = comma ? (size_t)(comma - s) : strlen(s);

		if (!i--) {
			*e = s;
			*elen = l;
			return true;
		}
		if (!comma)
			return false;
		s = comma + 1;
	}
}

static bool copy_out(const char *v, size_t len, char *out, size_t outlen)
{
	if (len >= outlen)
		return false;
	memcpy(out, v, len);
	out[len] = '\0';
	return true;
}

bool pve_prop(const char *s, const char *first_key, const char *key,
	      char *out, size_t outlen)
{
	const char *e;
	size_t elen;

	for (size_t i = 0; prop_elem(s, i, &e, &elen); i++) {
		const char *eq = memchr(e, '=', elen);

		if (!eq) {
			if (i == 0 && first_key && !strcmp(first_key, key))
				return copy_out(e, elen, out, outlen);
			continue;
		}
		if ((size_t)(eq - e) == strlen(key) &&
		    !memcmp(e, key, eq - e))
			return copy_out(eq + 1, elen - (eq - e) - 1, out,
					outlen);
	}
	return false;
}

bool pve_prop_key_at(const char *s, size_t i, char *out, size_t outlen)
{
	const char *e;
	size_t elen;
	const char *eq;

	if (!prop_elem(s, i, &e, &elen))
		return false;
	eq = memchr(e, '=', elen);
	return eq && copy_out(e, eq - e, out, outlen);
}

int pve_parse_size(const char *s, unsigned long long unit,
		   unsigned long long *out)
{
	static const char suffix[] = "KMGT";
	unsigned long long v = 0;
	const char *p = s;
	const char *u;

	if (!*p)
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		if (v > (~0ull - 9) / 10)
			return -EINVAL;
		v = v * 10 + (unsigned long long)(*p++ - '0');
	}
	if (p == s)
		return -EINVAL;
	if (!*p) {
		*out = v * unit;
		return v && *out / unit != v ? -EINVAL : 0;
	}
	u = strchr(suffix, *p);
	if (!u || p[1])
		return -EINVAL;
	for (long i = 0; i <= u - suffix; i++) {
		if (v > ~0ull / 1024)
			return -EINVAL;
		v *= 1024;
	}
	*out = v;
	return 0;
}

/* "drive-scsi0" -> "scsi0", "drive-tpmstate0-backup" -> "tpmstate0". */
static void virtdev_of(const char *stem, char *out, size_t len)
{
	size_t l;

	if (!strncmp(stem, "drive-", 6))
		stem += 6;
	snprintf(out, len, "%s", stem);
	l = strlen(out);
	if (l > 7 && !strcmp(out + l - 7, "-backup"))
		out[l - 7] = '\0';
}

int pve_disk_number(const char *const *stems, size_t n, const char *stem)
{
	char mine[160];
	char other[160];
	bool found = false;
	int rank = 0;

	virtdev_of(stem, mine, sizeof(mine));
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(stems[i], stem)) {
			found = true;
			continue;
		}
		virtdev_of(stems[i], other, sizeof(other));
		/* Perl's sort: bytewise; a tie (two archives for one
		 * device) in the order they come. */
		if (strcmp(other, mine) < 0 ||
		    (!strcmp(other, mine) && strcmp(stems[i], stem) < 0))
			rank++;
	}
	return found ? rank : -ENOENT;
}
