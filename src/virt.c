/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libvirt, for the cut-over of a libvirt guest.  The swap itself goes
 * through the monitor pass-through: libvirt's own block copy has no
 * "copy nothing" mode and would read the whole disk through the mount
 * again.  libvirt does not learn of the new node, so the live XML keeps
 * naming the mount's file (the domain is marked tainted, custom-monitor)
 * until the guest is restarted; the persistent definition is updated so
 * that the restart uses the target.
 *
 * libvirt's default error handler prints to stderr; a silent one is
 * installed, and each failure is reported with virGetLastErrorMessage().
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "util.h"
#include "virt.h"
#include "banned.h"

struct virt {
	virConnectPtr conn;
	virDomainPtr dom;
	char *name;
	pid_t pid;
};

static void quiet(void *arg, virErrorPtr e)
{
	(void)arg;
	(void)e;
}

/* libvirt's own files name the domain's QEMU process. */
static pid_t find_pid(const char *name)
{
	char *path = xasprintf("/run/libvirt/qemu/%s.pid", name);
	uint8_t *text = NULL;
	size_t len = 0;
	uint64_t v = 0;
	pid_t pid = 0;

	if (!read_file(path, 64, &text, &len)) {
		text[strcspn((char *)text, "\n")] = '\0';
		if (!parse_u64((char *)text, &v) && v < (1u << 30))
			pid = (pid_t)v;
	}
	free(text);
	free(path);
	return pid;
}

int virt_open(const char *uri, const char *domain, struct virt **out,
	      char *err, size_t len)
{
	struct virt *v = xcalloc(1, sizeof(*v));
	int ret = -EIO;

	virSetErrorFunc(NULL, quiet);
	v->name = xstrdup(domain);
	v->conn = virConnectOpen(uri ? uri : "qemu:///system");
	if (!v->conn) {
		snprintf(err, len, "cannot connect to libvirt '%s': %s",
			 uri ? uri : "qemu:///system",
			 virGetLastErrorMessage());
		goto err;
	}
	v->dom = virDomainLookupByName(v->conn, domain);
	if (!v->dom) {
		snprintf(err, len, "cannot use domain '%s': %s", domain,
			 virGetLastErrorMessage());
		ret = -ENOENT;
		goto err;
	}
	if (virDomainIsActive(v->dom) != 1) {
		snprintf(err, len, "cannot use domain '%s': it is not running",
			 domain);
		ret = -ESRCH;
		goto err;
	}
	v->pid = find_pid(domain);
	*out = v;
	return 0;
err:
	virt_close(v);
	return ret;
}

void virt_close(struct virt *v)
{
	if (!v)
		return;
	if (v->dom)
		virDomainFree(v->dom);
	if (v->conn)
		virConnectClose(v->conn);
	free(v->name);
	free(v);
}

pid_t virt_pid(const struct virt *v)
{
	return v->pid;
}

int virt_monitor(struct virt *v, const char *json, int fd, char **reply,
		 char *err, size_t len)
{
	int fds[1] = { fd };
	char *res = NULL;

	if (virDomainQemuMonitorCommandWithFiles(v->dom, json, fd >= 0 ? 1 : 0,
						 fd >= 0 ? fds : NULL, NULL,
						 NULL, &res, 0) < 0) {
		snprintf(err, len, "libvirt: %s", virGetLastErrorMessage());
		return -EIO;
	}
	*reply = xstrdup(res);
	free(res);
	return 0;
}

/* The <disk> of @doc whose <source> names @path, or NULL. */
static xmlNodePtr find_disk(xmlDocPtr doc, const char *path)
{
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathObjectPtr res = NULL;
	xmlNodePtr node = NULL;

	if (!ctx)
		return NULL;
	res = xmlXPathEvalExpression(
		(const xmlChar *)"/domain/devices/disk[source]", ctx);
	for (int i = 0; res && res->nodesetval &&
			i < res->nodesetval->nodeNr && !node; i++) {
		xmlNodePtr d = res->nodesetval->nodeTab[i];

		for (xmlNodePtr c = d->children; c && !node; c = c->next) {
			xmlChar *f;
			xmlChar *dev;

			if (c->type != XML_ELEMENT_NODE ||
			    xmlStrcmp(c->name, (const xmlChar *)"source"))
				continue;
			f = xmlGetProp(c, (const xmlChar *)"file");
			dev = xmlGetProp(c, (const xmlChar *)"dev");
			if ((f && !strcmp((char *)f, path)) ||
			    (dev && !strcmp((char *)dev, path)))
				node = d;
			xmlFree(f);
			xmlFree(dev);
		}
	}
	xmlXPathFreeObject(res);
	xmlXPathFreeContext(ctx);
	return node;
}

/* The disk now names @new: type file or block, <source file|dev>. */
static void retarget(xmlNodePtr disk, const char *new, bool blk)
{
	xmlSetProp(disk, (const xmlChar *)"type",
		   (const xmlChar *)(blk ? "block" : "file"));
	for (xmlNodePtr c = disk->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE ||
		    xmlStrcmp(c->name, (const xmlChar *)"source"))
			continue;
		xmlUnsetProp(c, (const xmlChar *)"file");
		xmlUnsetProp(c, (const xmlChar *)"dev");
		xmlSetProp(c, (const xmlChar *)(blk ? "dev" : "file"),
			   (const xmlChar *)new);
	}
}

int virt_persist_disk(struct virt *v, const char *old, const char *new,
		      bool blk, char *err, size_t len)
{
	xmlBufferPtr out = NULL;
	xmlDocPtr doc = NULL;
	xmlNodePtr disk;
	char *xml = NULL;
	int ret;

	ret = virDomainIsPersistent(v->dom);
	if (ret == 0)
		return 1;
	if (ret < 0)
		goto virt_err;
	xml = virDomainGetXMLDesc(v->dom, VIR_DOMAIN_XML_INACTIVE);
	if (!xml)
		goto virt_err;
	doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
				    XML_PARSE_NOWARNING);
	disk = doc ? find_disk(doc, old) : NULL;
	if (!disk) {
		snprintf(err, len, "the persistent definition of '%s' has no "
			 "disk '%s'", v->name, old);
		ret = -ENOENT;
		goto out;
	}
	retarget(disk, new, blk);
	out = xmlBufferCreate();
	if (!out || xmlNodeDump(out, doc, disk, 0, 0) < 0) {
		ret = -ENOMEM;
		snprintf(err, len, "cannot write the disk's XML");
		goto out;
	}
	if (virDomainUpdateDeviceFlags(v->dom, (const char *)xmlBufferContent(out),
				       VIR_DOMAIN_AFFECT_CONFIG) < 0)
		goto virt_err;
	ret = 0;
	goto out;
virt_err:
	snprintf(err, len, "libvirt: %s", virGetLastErrorMessage());
	ret = -EIO;
out:
	xmlBufferFree(out);
	xmlFreeDoc(doc);
	free(xml);
	return ret;
}
