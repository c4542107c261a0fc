"""The guest-side helper: a tiny static C program that makes exactly one ``finit_module`` or
``delete_module`` system call per module and prints its errno on the console.

busybox ``insmod`` retries a failed ``finit_module`` with ``init_module`` and so prints every kernel
error twice; ``rmmod`` waits or forces depending on the build. The helper does neither. It is
compiled with ``gcc -static`` on first use and cached under ``<cache>/oracle/`` by a hash of its
source and of the compiler version.

Output lines (one per system call, ``@@KMS`` marks kmodsim's lines on the console):

``@@KMS call <name> <errno>``   a finit_module/delete_module result (0: success)
``@@KMS skip <name>``          modprobe: the module is already in /proc/modules, no call made
``@@KMS ignored <name>``       modprobe: the failed call just printed was a softdep's, its error ignored
``@@KMS open <errno>``         the module file could not be opened (no call made)

``kmsh -F FLAGS insmod|modprobe ...`` passes FLAGS (a number: MODULE_INIT_IGNORE_MODVERSIONS 1,
MODULE_INIT_IGNORE_VERMAGIC 2) to every finit_module() call, as libkmod's
kmod_module_insert_module() does for ``modprobe --force-vermagic``/``--force-modversion``/``-f``
and ``insmod -f``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

from ..cache import cache_root
from ..errors import Error

HELPER_C = r"""
/* kmodsim guest helper: one finit_module/delete_module syscall per module, errno printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int loaded(const char *name)
{
	char line[512];
	size_t n = strlen(name);
	FILE *f = fopen("/proc/modules", "r");
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ' ')
			found = 1;
	fclose(f);
	return found;
}

static int init_flags;	/* finit_module() flags: kmsh -F FLAGS */

static int load(const char *name, const char *path, const char *args)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), e = 0;

	if (fd < 0) {
		printf("@@KMS open %d\n", errno);
		return 1;
	}
	if (syscall(SYS_finit_module, fd, args, init_flags) != 0)
		e = errno;
	close(fd);
	printf("@@KMS call %s %d\n", name, e);
	return e != 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && strcmp(argv[1], "-F") == 0) {           /* -F FLAGS: finit_module() flags */
		init_flags = atoi(argv[2]);
		argv[2] = argv[0];
		argv += 2;
		argc -= 2;
	}
	if (argc == 5 && strcmp(argv[1], "insmod") == 0)        /* insmod NAME PATH ARGS */
		return load(argv[2], argv[3], argv[4]);
	if (argc == 3 && strcmp(argv[1], "rmmod") == 0) {       /* rmmod NAME */
		int e = 0;

		if (syscall(SYS_delete_module, argv[2], O_NONBLOCK) != 0)
			e = errno;
		printf("@@KMS call %s %d\n", argv[2], e);
		return e != 0;
	}
	if (argc >= 3 && (argc - 3) % 4 == 0 && strcmp(argv[1], "modprobe") == 0) {
		/* modprobe TARGET [NAME PATH ARGS REQUIRED]...: kmod_module_probe_insert_module() */
		/* TARGET loaded: nothing; a loaded module of the list: passed over; no PATH: -ENOENT */
		/* without a call; a failure stops the list only when REQUIRED is 1 (softdeps: ignored); */
		/* REQUIRED b: a builtin module (modules.builtin), in the kernel: passed over */
		if (loaded(argv[2])) {
			printf("@@KMS skip %s\n", argv[2]);
			return 0;
		}
		for (int i = 3; i < argc; i += 4) {
			int req = strcmp(argv[i + 3], "1") == 0, e;

			if (strcmp(argv[i + 3], "b") == 0 || loaded(argv[i])) {
				printf("@@KMS skip %s\n", argv[i]);
				continue;
			}
			if (argv[i + 1][0] == '\0') {
				printf("@@KMS call %s %d\n", argv[i], ENOENT);
				e = 1;
			} else {
				e = load(argv[i], argv[i + 1], argv[i + 2]);
			}
			if (e && !req) {
				printf("@@KMS ignored %s\n", argv[i]);
				continue;
			}
			if (e)
				return 1;
		}
		return 0;
	}
	fprintf(stderr, "usage: kmsh [-F FLAGS] insmod NAME PATH ARGS | rmmod NAME | modprobe TARGET [NAME PATH ARGS REQUIRED]...\n");
	return 2;
}
"""


class HelperError(Error):
    pass


def helper_binary(cc: str = "gcc") -> str:
    """Path of the compiled static helper (built once, cached)."""
    exe = shutil.which(cc)
    if exe is None:
        raise HelperError(f"{cc}: not installed (the guest helper is compiled with `{cc} -static`)")
    try:
        ver = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HelperError(f"{cc} --version: {exc}") from None
    key = hashlib.sha256((HELPER_C + ver).encode()).hexdigest()[:16]
    d = os.path.join(cache_root(), "oracle")
    out = os.path.join(d, f"kmsh-{key}")
    if os.path.isfile(out):
        return out
    os.makedirs(d, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".cc-", dir=d)
    try:
        src = os.path.join(tmp, "kmsh.c")
        with open(src, "w") as f:
            f.write(HELPER_C)
        p = subprocess.run([exe, "-static", "-Os", "-s", "-o", os.path.join(tmp, "kmsh"), src],
                           capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["failed"])[-1]
            raise HelperError(f"{cc} -static kmsh.c: {tail} (is libc6-dev installed?)")
        os.replace(os.path.join(tmp, "kmsh"), out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
