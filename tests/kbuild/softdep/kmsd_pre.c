// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a soft dependency with one of its own. */
#include <linux/module.h>
#include <linux/init.h>

static int __init kmsd_pre_init(void)
{
	return 0;
}

static void __exit kmsd_pre_exit(void)
{
}

module_init(kmsd_pre_init);
module_exit(kmsd_pre_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: a soft dependency with one of its own");
MODULE_SOFTDEP("pre: kmsd_leaf");
