// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a soft dependency the kernel refuses (an import nothing exports: "Unknown
 * symbol", ENOENT; built with KBUILD_MODPOST_WARN=1). modprobe ignores the error of a module it
 * loads only as a softdep. */
#include <linux/module.h>
#include <linux/init.h>

extern int kmsd_nowhere(int x);

static int __init kmsd_refused_init(void)
{
	return kmsd_nowhere(1) < 0;
}

static void __exit kmsd_refused_exit(void)
{
}

module_init(kmsd_refused_init);
module_exit(kmsd_refused_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: refused by the kernel");
