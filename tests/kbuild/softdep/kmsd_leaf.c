// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: the soft dependency of a soft dependency. */
#include <linux/module.h>
#include <linux/init.h>

static int __init kmsd_leaf_init(void)
{
	return 0;
}

static void __exit kmsd_leaf_exit(void)
{
}

module_init(kmsd_leaf_init);
module_exit(kmsd_leaf_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: the soft dependency of a soft dependency");
