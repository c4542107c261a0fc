// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a soft dependency named by its alias. */
#include <linux/module.h>
#include <linux/init.h>

static int __init kmsd_post_init(void)
{
	return 0;
}

static void __exit kmsd_post_exit(void)
{
}

module_init(kmsd_post_init);
module_exit(kmsd_post_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: a soft dependency named by its alias");
MODULE_ALIAS("kmsd-alias");
