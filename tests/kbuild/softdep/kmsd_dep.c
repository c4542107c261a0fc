// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: kmsd_main's modules.dep dependency; its own softdep (pre: kmsd_weak) is
 * overridden by the softdep line of tests/kbuild/softdep/kmsd.conf (modprobe takes the first
 * matching softdep, and kmsd.conf sorts before modules.softdep). */
#include <linux/module.h>
#include <linux/init.h>

int kmsd_dep_fn(int x)
{
	return x;
}
EXPORT_SYMBOL_GPL(kmsd_dep_fn);

static int __init kmsd_dep_init(void)
{
	return 0;
}

static void __exit kmsd_dep_exit(void)
{
}

module_init(kmsd_dep_init);
module_exit(kmsd_dep_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: a dependency with an overridden softdep");
MODULE_SOFTDEP("pre: kmsd_weak");
