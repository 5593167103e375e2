// SPDX-License-Identifier: GPL-2.0
/*
 * Test helper: build a chain with libxdp's library API (what xdp-loader cannot ask for:
 * per-program frags support, device binding). Used by scripts/capture-dispatcher-config.sh
 * to capture real dispatcher config bytes for the unit-test fixtures.
 *
 *   libxdp-attach IFACE skb|native [devbind] OBJ[:frags]...
 *
 * Links against whichever libxdp.so.1 the dynamic loader finds (Debian 12's 1.3.1, or an
 * extracted 1.5.4 / 1.6.3 through scripts/libxdp-versions.sh's loader); only API present
 * since libxdp 1.3.0 is used, declared here so that no libxdp headers are needed.
 * libxdp pins the chain, so it outlives this process.
 */
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct xdp_program;
struct xdp_program *xdp_program__open_file(const char *filename, const char *section_name,
					   void *opts);
int xdp_program__set_xdp_frags_support(struct xdp_program *prog, bool frags);
int xdp_program__attach_multi(struct xdp_program **progs, size_t num_progs, int ifindex,
			      int mode, unsigned int flags);
long libxdp_get_error(const void *ptr);

#define MODE_NATIVE 1		/* enum xdp_attach_mode */
#define MODE_SKB 2
#define ATTACH_DEVBIND 1u	/* XDP_ATTACH_DEVBIND, libxdp >= 1.6.0 */

int main(int argc, char **argv)
{
	struct xdp_program *progs[10];
	unsigned int flags = 0;
	int i = 3, n = 0, ifindex, mode, err;

	if (argc < 4) {
		fprintf(stderr, "usage: %s IFACE skb|native [devbind] OBJ[:frags]...\n", argv[0]);
		return 2;
	}
	ifindex = if_nametoindex(argv[1]);
	if (!ifindex) {
		fprintf(stderr, "%s: no such interface\n", argv[1]);
		return 2;
	}
	mode = strcmp(argv[2], "native") == 0 ? MODE_NATIVE : MODE_SKB;
	if (strcmp(argv[i], "devbind") == 0) {
		flags |= ATTACH_DEVBIND;
		i++;
	}
	for (; i < argc && n < 10; i++, n++) {
		char *path = strdup(argv[i]), *suffix = strstr(path, ":frags");

		if (suffix)
			*suffix = '\0';
		progs[n] = xdp_program__open_file(path, NULL, NULL);
		err = (int)libxdp_get_error(progs[n]);
		if (err) {
			fprintf(stderr, "%s: cannot open (%d)\n", path, err);
			return 1;
		}
		if (suffix && xdp_program__set_xdp_frags_support(progs[n], true)) {
			fprintf(stderr, "%s: cannot set frags support\n", path);
			return 1;
		}
		free(path);
	}
	err = xdp_program__attach_multi(progs, n, ifindex, mode, flags);
	if (err) {
		fprintf(stderr, "attach of %d programs failed: %s\n", n, strerror(-err));
		return 1;
	}
	return 0;
}
