/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A datastore on a Proxmox Backup Server, through its API (PBS-PROTOCOL.md
 * section 1): REST calls over HTTP/1.1 (fetch.c) for listings and the
 * login, and a reader session (h2.c: the HTTP/1.1 upgrade to
 * proxmox-backup-reader-protocol-v1, then HTTP/2) per snapshot for the
 * manifest, the indexes and the chunks.
 *
 * Store paths map onto the API: "[ns/a/ns/b/]TYPE" lists groups,
 * "[..]TYPE/ID" snapshot times, "[..]TYPE/ID/TIME/FILE" is a file of
 * that snapshot, downloaded on its reader sessions (opened on first
 * use; another snapshot replaces them).  A snapshot has one session per
 * core (xfer_threads; at most --connections, each then with its share
 * of the streams): one connection's TLS and HTTP/2 run on one thread,
 * here and in the server, and that thread was the restore's limit.
 * Chunk requests take the sessions in turn.  An index is downloaded on
 * every session (that registers its chunks with the server), and
 * remembered with its SHA-256 to be downloaded again first on each
 * reconnect: no /chunk request ever meets PBS's 3 s 401; a changed
 * index is an error.
 *
 * Credentials: an API token ("user@realm!name", header PBSAPIToken, no
 * login) or a password, exchanged for a ticket at
 * /api2/json/access/ticket and renewed with the ticket itself once it is
 * an hour old (PBS tickets live two), so reconnects after hours work.
 * The secret lives in crypto_secure_alloc() memory (locked, not dumped)
 * and never in a log line, a debug trace (fetch redacts the headers) or
 * a message: ->label has the auth id, never the secret.
 *
 * Locking: ->sess_lock (rwlock) guards the session pointers and the
 * snapshot they are for: chunk reads hold it shared, a switch to another
 * snapshot exclusively; the snapshot fields are also read, unlocked, by
 * the sessions' own threads (upgrade_cb), which use_snapshot() joins
 * before it changes them.  ->idx_lock guards the list of indexes.
 * ->auth_lock guards the ticket.  Order: sess_lock -> idx_lock;
 * auth_lock alone.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <json-c/json.h>

#include "crypto.h"
#include "fetch.h"
#include "h2.h"
#include "jsonx.h"
#include "log.h"
#include "snap.h"
#include "store.h"
#include "store_backend.h"
#include "store_pbs_i.h"
#include "util.h"
#include "xfer.h"
#include "banned.h"

#define FILE_MAX (64u << 20)
#define REST_MAX (32u << 20)
#define TICKET_RENEW_NS (3600ull * 1000000000ull)
#define SECRET_MAX 4096

struct pbs_index {
	char *name;			/* "drive-scsi0.img.fidx" */
	uint8_t sha256[32];		/* of the bytes first downloaded */
};

/* The API's requests are few: the chunks go over the reader session. */
#define PBS_API_CONNECTIONS 4

struct store_pbs {
	struct store base;
	struct pbs_repo repo;		/* immutable */
	char *label;			/* immutable: "auth@host:port:store" */
	char *server;			/* immutable: "host:port" */
	char *base_url;			/* immutable: "https://host:port" */
	struct store_conf conf;		/* immutable; strings owned */
	char *secret;			/* immutable; secure memory */
	struct fetch *fetch;		/* immutable pointer */
	pthread_mutex_t auth_lock;
	char *ticket;			/* protected by ->auth_lock */
	char *csrf;			/* protected by ->auth_lock */
	uint64_t ticket_ns;		/* protected by ->auth_lock */
	pthread_rwlock_t sess_lock;
	struct h2 **h2;			/* protected by ->sess_lock: the
					   sessions, NULL: none */
	unsigned int nh2;		/* protected by ->sess_lock */
	unsigned int turn;		/* atomic: the next chunk's session */
	char *ns;			/* protected by ->sess_lock */
	char *type;			/* protected by ->sess_lock */
	char *id;			/* protected by ->sess_lock */
	int64_t time;			/* protected by ->sess_lock */
	pthread_mutex_t idx_lock;
	struct pbs_index *idx;		/* protected by ->idx_lock */
	size_t nidx;			/* protected by ->idx_lock */
};

static struct store_pbs *to_pbs(struct store *s)
{
	return container_of(s, struct store_pbs, base);
}

/* ---- helpers ---- */

/* Percent-encode all but RFC 3986's unreserved characters. */
static char *url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(3 * strlen(s) + 1);
	char *o = out;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

/*
 * "[ns/a/ns/b/]rest" -> namespace "a/b" (malloc'ed, "" at the root) and
 * the rest split at '/' into up to 4 components.  -EINVAL otherwise.
 */
static int split_path(const char *path, char **ns, char *comp[4],
		      size_t *ncomp)
{
	struct buf b;
	char *copy = xstrdup(path);
	char *p = copy;
	int ret = 0;

	buf_init(&b, 4096);
	*ncomp = 0;
	while (!strncmp(p, "ns/", 3)) {
		char *end = strchr(p + 3, '/');
		size_t n = end ? (size_t)(end - p - 3) : strlen(p + 3);

		if (!store_pbs_safe_id(p + 3, n)) {
			ret = -EINVAL;
			goto out;
		}
		if ((b.len && buf_append(&b, "/", 1)) ||
		    buf_append(&b, p + 3, n)) {
			ret = -ENOMEM;
			goto out;
		}
		p = end ? end + 1 : p + 3 + n;
	}
	while (*p) {
		char *end = strchr(p, '/');

		if (*ncomp == 4) {
			ret = -EINVAL;
			goto out;
		}
		if (end)
			*end = '\0';
		comp[(*ncomp)++] = xstrdup(p);
		p = end ? end + 1 : p + strlen(p);
	}
	if (buf_append(&b, "", 1))
		ret = -ENOMEM;
out:
	if (ret) {
		for (size_t i = 0; i < *ncomp; i++)
			free(comp[i]);
		*ncomp = 0;
		buf_release(&b);
	} else {
		*ns = (char *)buf_steal(&b, NULL);
	}
	free(copy);
	return ret;
}

/* ---- authentication ---- */

/* ->auth_lock held: log in (or renew) for a ticket. */
static int login_locked(struct store_pbs *p)
{
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	json_object *req = json_object_new_object();
	json_object *root = NULL;
	json_object *data;
	json_object *t;
	json_object *c;
	struct fetch_request rq = {
		.method = "POST",
		.headers = hdrs,
		.prio = FETCH_DEMAND,
		.max = 1 << 20,
		.error_body = true,
	};
	struct fetch_response resp = { 0 };
	const char *body;
	char *url;
	int ret;

	json_object_object_add(req, "username",
			       json_object_new_string(p->repo.auth_id));
	/* An hour-old ticket renews itself (PBS takes it as the password). */
	json_object_object_add(req, "password",
			       json_object_new_string(p->ticket ? p->ticket :
							     p->secret));
	body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	url = xasprintf("%s/api2/json/access/ticket", p->base_url);
	rq.url = url;
	rq.body = body;
	rq.body_len = strlen(body);
	ret = fetch_request(p->fetch, &rq, NULL, NULL, &resp);
	/* json-c keeps the serialised copy inside the object: wipe both. */
	crypto_wipe((char *)body, strlen(body));
	json_object_put(req);
	free(url);
	if (ret || resp.status != 200) {
		if (!ret || resp.body)
			log_err("pbs: cannot log in to '%s' as '%s': HTTP %ld%s%s",
				p->server, p->repo.auth_id, resp.status,
				resp.body ? ": " : "",
				resp.body ? (const char *)resp.body : "");
		ret = ret ? ret : -EACCES;
		goto out;
	}
	root = json_tokener_parse((const char *)resp.body);
	if (!root || !json_object_object_get_ex(root, "data", &data) ||
	    !json_object_object_get_ex(data, "ticket", &t) ||
	    !json_object_object_get_ex(data, "CSRFPreventionToken", &c) ||
	    !json_object_is_type(t, json_type_string) ||
	    !json_object_is_type(c, json_type_string)) {
		log_err("pbs: cannot log in to '%s': the answer has no ticket",
			p->server);
		ret = -EBADMSG;
		goto out;
	}
	if (p->ticket) {
		crypto_wipe(p->ticket, strlen(p->ticket));
		free(p->ticket);
	}
	free(p->csrf);
	p->ticket = xstrdup(json_object_get_string(t));
	p->csrf = xstrdup(json_object_get_string(c));
	p->ticket_ns = now_ns();
out:
	json_object_put(root);
	if (resp.body) {
		crypto_wipe(resp.body, resp.len);
		free(resp.body);
	}
	return ret;
}

/*
 * The credential header lines of a request: *@l1, and *@l2 or NULL
 * (malloc'ed; wipe them with free_line).  Logs in first, or renews an
 * hour-old ticket.
 */
static int auth_lines(struct store_pbs *p, char **l1, char **l2)
{
	int ret = 0;

	*l1 = *l2 = NULL;
	if (p->repo.token) {
		*l1 = xasprintf("Authorization: PBSAPIToken %s:%s",
				p->repo.auth_id, p->secret);
		return 0;
	}
	pthread_mutex_lock(&p->auth_lock);
	if (!p->ticket || now_ns() - p->ticket_ns > TICKET_RENEW_NS) {
		ret = login_locked(p);
		/* A renewal that fails: a fresh login with the password. */
		if (ret && p->ticket) {
			crypto_wipe(p->ticket, strlen(p->ticket));
			free(p->ticket);
			p->ticket = NULL;
			ret = login_locked(p);
		}
	}
	if (!ret) {
		char *enc = url_encode(p->ticket);

		*l1 = xasprintf("Cookie: PBSAuthCookie=%s", enc);
		*l2 = xasprintf("CSRFPreventionToken: %s", p->csrf);
		crypto_wipe(enc, strlen(enc));
		free(enc);
	}
	pthread_mutex_unlock(&p->auth_lock);
	return ret;
}

static void free_line(char *l)
{
	if (l) {
		crypto_wipe(l, strlen(l));
		free(l);
	}
}

/* ---- REST ---- */

/* GET /api2/json/@path: the body of a 200 (malloc'ed). */
static int rest_get(struct store_pbs *p, const char *path, const char *what,
		    uint8_t **body, size_t *len)
{
	struct fetch_request rq = {
		.prio = FETCH_DEMAND,
		.max = REST_MAX,
		.error_body = true,
	};
	struct fetch_response resp = { 0 };
	const char *hdrs[3];
	char *l1;
	char *l2;
	char *url;
	int ret;

	ret = auth_lines(p, &l1, &l2);
	if (ret)
		return ret;
	hdrs[0] = l1;
	hdrs[1] = l2;
	hdrs[2] = NULL;
	url = xasprintf("%s/api2/json/%s", p->base_url, path);
	rq.url = url;
	rq.headers = hdrs;
	ret = fetch_request(p->fetch, &rq, NULL, NULL, &resp);
	free_line(l1);
	free_line(l2);
	free(url);
	if (!ret && resp.status == 200) {
		*body = resp.body;
		*len = resp.len;
		return 0;
	}
	if (resp.status) {
		char text[256];
		size_t n = 0;

		for (; resp.body && n < resp.len && n + 1 < sizeof(text) &&
		       resp.body[n] != '\n'; n++)
			text[n] = resp.body[n] >= ' ' ? (char)resp.body[n] : '?';
		text[n] = '\0';
		log_err("pbs: cannot %s on '%s': HTTP %ld%s%s", what, p->label,
			resp.status, n ? ": " : "", text);
		/* Said why, just now. */
		ret = resp.status == 401 || resp.status == 403 ? -EACCES :
								  -EREMOTEIO;
	}
	free(resp.body);
	return ret;
}

static int add_name(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(**v));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[(*n)++] = xstrdup(s);
	nv[*n] = NULL;
	return 0;
}

/* The "data" array of a PBS answer (*@root to put), or NULL. */
static json_object *data_array(const char *body, size_t len,
			       json_object **root)
{
	size_t bad_at;
	json_object *data;

	*root = jsonx_parse(body, len, &bad_at);
	if (!*root || !json_object_object_get_ex(*root, "data", &data) ||
	    !json_object_is_type(data, json_type_array))
		return NULL;
	return data;
}

int store_pbs_parse_list(const char *body, size_t len, const char *type,
			 int ncomp, char ***names, size_t *n)
{
	json_object *root;
	json_object *data = data_array(body, len, &root);
	char **v = NULL;
	size_t cnt = 0;
	int ret = 0;

	*names = NULL;
	*n = 0;
	if (!data) {
		ret = -EBADMSG;
		goto out;
	}
	for (size_t i = 0; !ret && i < json_object_array_length(data); i++) {
		json_object *e = json_object_array_get_idx(data, i);
		const char *t = jsonx_str(e, "backup-type");
		json_object *bt;
		char ts[21];

		if (!t || strcmp(t, type))
			continue;
		if (ncomp == 1) {
			const char *id = jsonx_str(e, "backup-id");

			if (id && snap_is_safe_id(id))
				ret = add_name(&v, &cnt, id);
			continue;
		}
		if (json_object_object_get_ex(e, "backup-time", &bt) &&
		    json_object_is_type(bt, json_type_int) &&
		    !snap_format_time(json_object_get_int64(bt), ts))
			ret = add_name(&v, &cnt, ts);
	}
	if (!ret) {
		*names = v ? v : xcalloc(1, sizeof(*v));
		*n = cnt;
		v = NULL;
		cnt = 0;
	}
out:
	store_free_names(v, cnt);
	json_object_put(root);
	return ret;
}

int store_pbs_parse_ns(const char *body, size_t len, const char *parent,
		       char ***names, size_t *n)
{
	size_t plen = strlen(parent);
	json_object *root;
	json_object *data = data_array(body, len, &root);
	char **v = NULL;
	size_t cnt = 0;
	int ret = 0;

	*names = NULL;
	*n = 0;
	if (!data) {
		json_object_put(root);
		return -EBADMSG;
	}
	for (size_t i = 0; !ret && i < json_object_array_length(data); i++) {
		const char *ns = jsonx_str(json_object_array_get_idx(data, i),
					   "ns");
		const char *child;

		if (!ns || strncmp(ns, parent, plen))
			continue;
		child = ns + plen;
		if (plen && *child++ != '/')
			continue;
		if (*child && !strchr(child, '/') && snap_is_safe_id(child))
			ret = add_name(&v, &cnt, child);
	}
	if (!ret) {
		*names = v ? v : xcalloc(1, sizeof(*v));
		*n = cnt;
	} else {
		store_free_names(v, cnt);
	}
	json_object_put(root);
	return ret;
}

static int pbs_list(struct store *s, const char *path, char ***names,
		    size_t *n)
{
	struct store_pbs *p = to_pbs(s);
	uint8_t *body = NULL;
	size_t len = 0;
	char *comp[4];
	size_t ncomp = 0;
	char *ns = NULL;
	char *ens = NULL;
	char *q = NULL;
	char what[300];
	int ret;

	*names = NULL;
	*n = 0;
	ret = split_path(path, &ns, comp, &ncomp);
	if (!ret && ncomp == 1 && !strcmp(comp[0], "ns")) {
		/* "[ns/..]ns": the child namespaces (PBS lists the parent
		 * too; store_pbs_parse_ns keeps the children). */
		ens = url_encode(ns);
		q = xasprintf("admin/datastore/%s/namespace?max-depth=1%s%s",
			      p->repo.store, *ns ? "&parent=" : "", ens);
		snprintf(what, sizeof(what), "list the namespaces%s%s",
			 *ns ? " of " : "", ns);
		ret = rest_get(p, q, what, &body, &len);
		if (!ret)
			ret = store_pbs_parse_ns((const char *)body, len, ns,
						 names, n);
		goto parsed;
	}
	if (ret || !ncomp || ncomp > 2 || !snap_is_backup_type(comp[0])) {
		ret = ret ? ret : -ENOTSUP;
		goto out;
	}
	ens = url_encode(ns);
	if (ncomp == 1) {
		q = xasprintf("admin/datastore/%s/groups%s%s", p->repo.store,
			      *ns ? "?ns=" : "", ens);
		snprintf(what, sizeof(what), "list the groups%s%s", *ns ?
			 " of namespace " : "", ns);
	} else {
		char *eid = url_encode(comp[1]);

		q = xasprintf("admin/datastore/%s/snapshots?backup-type=%s&"
			      "backup-id=%s%s%s", p->repo.store, comp[0], eid,
			      *ns ? "&ns=" : "", ens);
		snprintf(what, sizeof(what), "list the snapshots of '%s/%s'%s%s",
			 comp[0], comp[1], *ns ? " in namespace " : "", ns);
		free(eid);
	}
	ret = rest_get(p, q, what, &body, &len);
	if (ret)
		goto out;
	ret = store_pbs_parse_list((const char *)body, len, comp[0],
				   (int)ncomp, names, n);
parsed:
	if (ret == -EBADMSG) {
		log_err("pbs: cannot %s on '%s': the answer is not a JSON "
			"\"data\" list", what, p->label);
		ret = -EREMOTEIO;
	}
out:
	free(body);
	for (size_t i = 0; i < ncomp; i++)
		free(comp[i]);
	free(ns);
	free(ens);
	free(q);
	return ret;
}

/* ---- reader sessions ---- */

/* h2 conf.upgrade: the request for the current snapshot. */
static int upgrade_cb(void *arg, struct buf *out)
{
	struct store_pbs *p = arg;
	char *l1;
	char *l2;
	char *ens;
	char *eid;
	char *req;
	int ret;

	ret = auth_lines(p, &l1, &l2);
	if (ret)
		return ret;
	/*
	 * The snapshot fields do not change while this session exists:
	 * use_snapshot() frees it (joining this thread) first.
	 */
	ens = url_encode(p->ns);
	eid = url_encode(p->id);
	req = xasprintf("GET /api2/json/reader?backup-type=%s&backup-id=%s&"
			"backup-time=%lld&debug=false&store=%s%s%s HTTP/1.1\r\n"
			"Host: %s\r\n"
			"User-Agent: pbs-livemount/%s\r\n"
			"Content-Type: application/x-www-form-urlencoded\r\n"
			"%s\r\n%s%s"
			"Connection: upgrade\r\n"
			"Upgrade: proxmox-backup-reader-protocol-v1\r\n\r\n",
			p->type, eid, (long long)p->time, p->repo.store,
			*p->ns ? "&ns=" : "", ens, p->server, PROG_VERSION, l1,
			l2 ? l2 : "", l2 ? "\r\n" : "");
	ret = buf_append(out, req, strlen(req));
	crypto_wipe(req, strlen(req));
	free(req);
	free(ens);
	free(eid);
	free_line(l1);
	free_line(l2);
	return ret;
}

static char *download_path(const char *name)
{
	char *e = url_encode(name);
	char *path = xasprintf("/download?file-name=%s", e);

	free(e);
	return path;
}

/* h2 conf.prepare: every index again, on the new session. */
static int prepare_cb(void *arg, struct h2 *h, uint64_t session)
{
	struct store_pbs *p = arg;
	struct pbs_index *list;
	size_t n;
	int ret = 0;

	pthread_mutex_lock(&p->idx_lock);
	n = p->nidx;
	list = xcalloc(n ? n : 1, sizeof(*list));
	for (size_t i = 0; i < n; i++) {
		list[i].name = xstrdup(p->idx[i].name);
		memcpy(list[i].sha256, p->idx[i].sha256, 32);
	}
	pthread_mutex_unlock(&p->idx_lock);
	for (size_t i = 0; !ret && i < n; i++) {
		char *path = download_path(list[i].name);
		uint8_t *buf = NULL;
		uint8_t d[32];
		size_t len = 0;

		ret = h2_get_on(h, session, path, FILE_MAX, &buf, &len);
		free(path);
		if (!ret) {
			crypto_sha256(buf, len, d);
			if (memcmp(d, list[i].sha256, 32)) {
				log_err("pbs: cannot read on from '%s': index "
					"'%s' changed on the server since the "
					"mount began", p->label, list[i].name);
				ret = -EBADMSG;
			}
		} else if (ret == -ENOENT) {
			log_err("pbs: cannot read on from '%s': index '%s' is "
				"gone (the snapshot was removed?)", p->label,
				list[i].name);
		}
		free(buf);
	}
	for (size_t i = 0; i < n; i++)
		free(list[i].name);
	free(list);
	return ret;
}

/* ->sess_lock held for writing, or the store being closed. */
static void free_sessions(struct store_pbs *p)
{
	/* Ends each session cleanly (GOAWAY) and the server's reader task. */
	for (unsigned int i = 0; i < p->nh2; i++)
		h2_free(p->h2[i]);
	free(p->h2);
	p->h2 = NULL;
	p->nh2 = 0;
}

/* ->sess_lock held for writing: the sessions of the current snapshot
 * (each connects on its first request). */
static int new_sessions(struct store_pbs *p)
{
	unsigned int n = xfer_threads(p->conf.connections);
	unsigned int conns = p->conf.connections;
	char label[600];
	char ts[21] = "";
	int ret = 0;
	struct h2_conf hc = {
		.label = label,
		.host = p->repo.host,
		.port = p->repo.port,
		.ca_file = p->conf.ca_file,
		.fingerprint = p->conf.fingerprint,
		.insecure = p->conf.insecure,
		/* A fixed count shared out; adaptive: each its own. */
		.streams = conns ? (conns + n - 1) / n : 0,
		.body_pool = STORE_CHUNK_MAX + 1,
		.remote_timeout_ms = p->conf.remote_timeout_ms,
		.request_timeout_ms = p->conf.request_timeout_ms,
		.limit_rate = p->conf.limit_rate,
		.upgrade = upgrade_cb,
		.prepare = prepare_cb,
		.arg = p,
	};

	snap_format_time(p->time, ts);
	snprintf(label, sizeof(label), "%s (%s%s%s/%s/%s)", p->label, p->ns,
		 *p->ns ? ":" : "", p->type, p->id, ts);
	p->h2 = xcalloc(n, sizeof(*p->h2));
	for (p->nh2 = 0; !ret && p->nh2 < n; p->nh2++)
		ret = h2_new(&hc, &p->h2[p->nh2]);
	if (ret)
		free_sessions(p);
	return ret;
}

static void clear_indexes(struct store_pbs *p)
{
	pthread_mutex_lock(&p->idx_lock);
	for (size_t i = 0; i < p->nidx; i++)
		free(p->idx[i].name);
	free(p->idx);
	p->idx = NULL;
	p->nidx = 0;
	pthread_mutex_unlock(&p->idx_lock);
}

/* ->sess_lock held for writing: the session of this snapshot. */
static int use_snapshot(struct store_pbs *p, const char *ns, const char *type,
			const char *id, int64_t time)
{
	if (p->h2 && !strcmp(p->ns, ns) && !strcmp(p->type, type) &&
	    !strcmp(p->id, id) && p->time == time)
		return 0;
	free_sessions(p);
	clear_indexes(p);
	free(p->ns);
	free(p->type);
	free(p->id);
	p->ns = xstrdup(ns);
	p->type = xstrdup(type);
	p->id = xstrdup(id);
	p->time = time;
	return new_sessions(p);
}

static bool is_index(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && !strcmp(name + n - 5, ".fidx")) ||
	       (n > 5 && !strcmp(name + n - 5, ".didx"));
}

/*
 * ->sess_lock held shared: index @name (at @dl, as session 0 gave it:
 * @data, @len) downloaded on every other session, which must give the
 * same bytes.
 */
static int index_on_others(struct store_pbs *p, const char *name,
			   const char *dl, const uint8_t *data, size_t len)
{
	int ret = 0;

	for (unsigned int i = 1; !ret && i < p->nh2; i++) {
		uint8_t *b = NULL;
		size_t n = 0;

		ret = h2_get(p->h2[i], dl, FETCH_DEMAND, FILE_MAX, NULL, NULL,
			     &b, &n);
		if (!ret && (n != len || memcmp(b, data, len))) {
			log_err("pbs: cannot read from '%s': index '%s' "
				"differs between two sessions (the snapshot "
				"changed?)", p->label, name);
			ret = -EBADMSG;
		}
		free(b);
	}
	return ret;
}

static int pbs_get_file(struct store *s, const char *path, size_t max,
			uint8_t **buf, size_t *len)
{
	struct store_pbs *p = to_pbs(s);
	char *comp[4];
	size_t ncomp = 0;
	char *ns = NULL;
	char *dl = NULL;
	int64_t time;
	int ret;

	ret = split_path(path, &ns, comp, &ncomp);
	if (ret || ncomp != 4 || !snap_is_backup_type(comp[0]) ||
	    snap_parse_time(comp[2], &time) || !snap_is_safe_id(comp[3])) {
		ret = ret ? ret : -EINVAL;
		goto out;
	}
	pthread_rwlock_wrlock(&p->sess_lock);
	ret = use_snapshot(p, ns, comp[0], comp[1], time);
	pthread_rwlock_unlock(&p->sess_lock);
	if (ret)
		goto out;
	dl = download_path(comp[3]);
	*buf = NULL;
	*len = 0;
	pthread_rwlock_rdlock(&p->sess_lock);
	ret = p->h2 ? h2_get(p->h2[0], dl, FETCH_DEMAND,
			     MIN(max, (size_t)FILE_MAX), NULL, NULL, buf,
			     len) :
		      -EINVAL;
	/* An index registers its chunks on the other sessions too. */
	if (!ret && is_index(comp[3]))
		ret = index_on_others(p, comp[3], dl, *buf, *len);
	pthread_rwlock_unlock(&p->sess_lock);
	if (ret && *buf) {
		free(*buf);
		*buf = NULL;
	}
	if (!ret && is_index(comp[3])) {
		struct pbs_index *ni;

		/* Registered on this session now; on every later one too. */
		pthread_mutex_lock(&p->idx_lock);
		ni = realloc(p->idx, (p->nidx + 1) * sizeof(*ni));
		if (ni) {
			p->idx = ni;
			ni[p->nidx].name = xstrdup(comp[3]);
			crypto_sha256(*buf, *len, ni[p->nidx].sha256);
			p->nidx++;
		}
		pthread_mutex_unlock(&p->idx_lock);
		if (!ni) {
			free(*buf);
			ret = -ENOMEM;
		}
	}
out:
	for (size_t i = 0; i < ncomp; i++)
		free(comp[i]);
	free(ns);
	free(dl);
	return ret;
}

static int pbs_get_chunk(struct store *s, const uint8_t digest[32],
			 enum store_prio prio, store_check_fn check, void *arg)
{
	struct store_pbs *p = to_pbs(s);
	char hex[65];
	char path[96];
	int ret;

	hex_encode(digest, 32, hex);
	snprintf(path, sizeof(path), "/chunk?digest=%s", hex);
	pthread_rwlock_rdlock(&p->sess_lock);
	if (p->h2) {
		unsigned int t = __atomic_fetch_add(&p->turn, 1,
						    __ATOMIC_RELAXED);

		ret = h2_get(p->h2[t % p->nh2], path, store_fetch_prio(prio),
			     STORE_CHUNK_MAX, check, arg, NULL, NULL);
	} else {
		ret = -EINVAL;
	}
	pthread_rwlock_unlock(&p->sess_lock);
	return ret;
}

static void pbs_cancel(struct store *s)
{
	struct store_pbs *p = to_pbs(s);

	fetch_cancel(p->fetch);
	pthread_rwlock_rdlock(&p->sess_lock);
	for (unsigned int i = 0; i < p->nh2; i++)
		h2_cancel(p->h2[i]);
	pthread_rwlock_unlock(&p->sess_lock);
}

static unsigned int pbs_window(struct store *s)
{
	struct store_pbs *p = to_pbs(s);
	unsigned int n = 0;

	pthread_rwlock_rdlock(&p->sess_lock);
	for (unsigned int i = 0; i < p->nh2; i++)
		n += h2_window(p->h2[i]);
	pthread_rwlock_unlock(&p->sess_lock);
	return n;
}

static void pbs_close(struct store *s)
{
	struct store_pbs *p = to_pbs(s);

	free_sessions(p);
	fetch_free(p->fetch);
	clear_indexes(p);
	if (p->secret)
		crypto_secure_free(p->secret, SECRET_MAX);
	if (p->ticket) {
		crypto_wipe(p->ticket, strlen(p->ticket));
		free(p->ticket);
	}
	free(p->csrf);
	free(p->ns);
	free(p->type);
	free(p->id);
	free(p->label);
	free(p->server);
	free(p->base_url);
	free((char *)p->conf.ca_file);
	free((char *)p->conf.fingerprint);
	pthread_rwlock_destroy(&p->sess_lock);
	pthread_mutex_destroy(&p->idx_lock);
	pthread_mutex_destroy(&p->auth_lock);
	free(p);
}

static const struct store_ops pbs_ops = {
	.name = "pbs",
	.get_file = pbs_get_file,
	.get_chunk = pbs_get_chunk,
	.list = pbs_list,
	.cancel = pbs_cancel,
	.window = pbs_window,
	.close = pbs_close,
};

static bool pbs_claims(const char *url, enum store_kind kind)
{
	(void)url;
	return kind == STORE_KIND_PBS;
}

static int pbs_open(const struct store_conf *conf, struct store **out)
{
	const char *secret = store_conf_get(conf, STORE_PBS_SECRET);
	struct fetch_conf fc = { 0 };
	struct store_pbs *p;
	char why[200];
	bool v6;
	int ret;

	p = xcalloc(1, sizeof(*p));
	ret = pbs_repo_parse(conf->url, &p->repo, why, sizeof(why));
	if (ret) {
		log_err("pbs: cannot use repository '%s': %s", conf->url, why);
		free(p);
		return ret;
	}
	if (!secret || !*secret) {
		log_err("pbs: cannot log in as '%s': no %s (PBS_PASSWORD, "
			"PBS_PASSWORD_FILE, --password-file or --password-fd)",
			p->repo.auth_id, p->repo.token ? "token secret" :
			"password");
		free(p);
		return -EACCES;
	}
	if (strlen(secret) >= SECRET_MAX) {
		log_err("pbs: cannot use the secret for '%s': longer than %u "
			"bytes", p->repo.auth_id, SECRET_MAX - 1);
		free(p);
		return -EINVAL;
	}
	p->conf = *conf;
	p->conf.ca_file = conf->ca_file ? xstrdup(conf->ca_file) : NULL;
	p->conf.fingerprint = conf->fingerprint ? xstrdup(conf->fingerprint) :
						  NULL;
	p->conf.url = NULL;
	p->conf.nset = 0;	/* the settings stay the caller's */
	p->conf.auth_header = NULL;
	p->secret = crypto_secure_alloc(SECRET_MAX);
	if (!p->secret) {
		free(p);
		return -ENOMEM;
	}
	memcpy(p->secret, secret, strlen(secret) + 1);
	v6 = strchr(p->repo.host, ':') != NULL;
	p->server = xasprintf(v6 ? "[%s]:%u" : "%s:%u", p->repo.host,
			      p->repo.port);
	p->base_url = xasprintf("https://%s", p->server);
	p->label = xasprintf("%s@%s:%s", p->repo.auth_id, p->server,
			     p->repo.store);
	p->ns = xstrdup("");
	pthread_mutex_init(&p->auth_lock, NULL);
	pthread_mutex_init(&p->idx_lock, NULL);
	pthread_rwlock_init(&p->sess_lock, NULL);
	/* The API's few requests: the chunks go over the reader session. */
	store_fetch_conf(conf, &fc);
	fc.connections = PBS_API_CONNECTIONS;
	fc.limit_rate = 0;
	fc.host = p->repo.host;
	ret = fetch_new(&fc, &p->fetch);
	if (ret) {
		p->base.ops = &pbs_ops;
		pbs_close(&p->base);
		return ret;
	}
	p->base.ops = &pbs_ops;
	p->base.where = p->label;
	*out = &p->base;
	return 0;
}

static const struct store_option pbs_options[] = {
	{ "password-file", "FILE",
	  "PBS password or API token secret (first\n"
	  "line); also PBS_PASSWORD, PBS_PASSWORD_FILE,\n"
	  "PBS_PASSWORD_FD", NULL },
	{ "password-fd", "N", "the same, from descriptor N", store_check_fd },
	{ NULL, NULL, NULL, NULL },
};

const struct store_backend store_pbs_backend = {
	.name = "pbs",
	.claims = pbs_claims,
	.options = pbs_options,
	.credentials = store_pbs_credentials,
	.open = pbs_open,
};
